package taskinfo

import (
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/apimachinery/pkg/types"
)

// PodUID is the pod uid of a task id, with or without an attempt (TaskID's
// inverse); "" for an id that is not a pod's. A UID has no dots.
func PodUID(taskID string) types.UID {
	rest, ok := strings.CutPrefix(taskID, TaskIDPrefix)
	if !ok {
		return ""
	}
	uid, _, _ := strings.Cut(rest, ".")
	return types.UID(uid)
}

// Terminal reports whether a task in state s has ended for good: its pod
// ends with it, and it runs nowhere any more. A task that is staging,
// starting, running, being killed, or unreachable (its agent partitioned:
// it may come back RUNNING) has not; every other state, including one this
// code does not know, is an end.
func Terminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TASK_STAGING, mesos.TASK_STARTING, mesos.TASK_RUNNING, mesos.TASK_KILLING, mesos.TASK_UNREACHABLE:
		return false
	}
	return true
}
