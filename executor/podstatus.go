package executor

import (
	"fmt"
	"sort"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
)

// verdict is what a pod's status, as the kubelet wrote it, means for its task.
type verdict struct {
	state   mesos.TaskState
	message string
	reason  *mesos.TaskStatus_Reason
	// stop: the pod must be stopped before the (terminal) state is sent.
	stop bool
}

// Waiting reasons after which a container will never start without someone
// changing the pod or the node: the task fails at once.
var fatalWaiting = map[string]bool{
	"ErrImageNeverPull":          true,
	"InvalidImageName":           true,
	"CreateContainerConfigError": true,
	"CreateContainerError":       true,
	"RunContainerError":          true,
}

// Waiting reasons that may heal (a registry coming back): the task fails
// only when they last longer than the image pull timeout.
var slowWaiting = map[string]bool{
	"ErrImagePull":     true,
	"ImagePullBackOff": true,
}

// judge maps a pod to its task's state; ok is false while nothing is to be
// said (pending, starting, running but not ready yet). pullStuck says the
// pod has waited for an image for longer than allowed.
func judge(pod *v1.Pod, pullStuck bool) (verdict, bool) {
	switch pod.Status.Phase {
	case v1.PodSucceeded:
		return verdict{state: mesos.TASK_FINISHED, message: "pod succeeded: " + exits(pod)}, true
	case v1.PodFailed:
		msg := "pod failed"
		if pod.Status.Reason != "" {
			msg += " (" + pod.Status.Reason + ")"
		}
		if pod.Status.Message != "" {
			msg += ": " + pod.Status.Message
		}
		if e := exits(pod); e != "" {
			msg += ": " + e
		}
		reason := mesos.REASON_COMMAND_EXECUTOR_FAILED
		if oomKilled(pod) {
			// What Mesos' own containerizer says of a task that outgrew its
			// memory: frameworks and operators look for this reason.
			reason = mesos.REASON_CONTAINER_LIMITATION_MEMORY
		}
		return verdict{state: mesos.TASK_FAILED, message: msg, reason: reason.Enum()}, true
	}
	for _, cs := range allStatuses(pod) {
		w := cs.State.Waiting
		if w == nil {
			continue
		}
		if fatalWaiting[w.Reason] || (pullStuck && slowWaiting[w.Reason]) {
			msg := fmt.Sprintf("container %s cannot start: %s", cs.Name, w.Reason)
			if w.Message != "" {
				msg += ": " + w.Message
			}
			return verdict{state: mesos.TASK_FAILED, message: msg, reason: mesos.REASON_CONTAINER_LAUNCH_FAILED.Enum(), stop: true}, true
		}
	}
	if pod.Status.Phase == v1.PodRunning && ready(pod) {
		return verdict{state: mesos.TASK_RUNNING, message: "pod is running and ready"}, true
	}
	return verdict{}, false
}

// oomKilled says whether a container of the pod was last ended by the
// kernel's OOM killer (its memory limit, enforced through its cgroup).
func oomKilled(pod *v1.Pod) bool {
	for _, cs := range allStatuses(pod) {
		t := cs.State.Terminated
		if t == nil {
			t = cs.LastTerminationState.Terminated
		}
		if t != nil && t.Reason == "OOMKilled" {
			return true
		}
	}
	return false
}

// pullWaiting says whether some container waits for its image.
func pullWaiting(pod *v1.Pod) bool {
	for _, cs := range allStatuses(pod) {
		if w := cs.State.Waiting; w != nil && slowWaiting[w.Reason] {
			return true
		}
	}
	return false
}

func allStatuses(pod *v1.Pod) []v1.ContainerStatus {
	return append(append([]v1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
}

func ready(pod *v1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodReady {
			return c.Status == v1.ConditionTrue
		}
	}
	return false
}

// exits describes how the pod's containers ended, failures first:
// "container web exited with code 1 (Error)".
func exits(pod *v1.Pod) string {
	var failed, ok []string
	for _, cs := range allStatuses(pod) {
		t := cs.State.Terminated
		if t == nil {
			t = cs.LastTerminationState.Terminated
		}
		if t == nil {
			continue
		}
		s := fmt.Sprintf("container %s exited with code %d", cs.Name, t.ExitCode)
		if t.Signal != 0 {
			s += fmt.Sprintf(" (signal %d)", t.Signal)
		}
		if t.Reason != "" {
			s += " (" + t.Reason + ")"
		}
		if t.Message != "" {
			s += ": " + strings.TrimSpace(t.Message)
		}
		if t.ExitCode != 0 {
			failed = append(failed, s)
		} else {
			ok = append(ok, s)
		}
	}
	sort.Strings(failed)
	sort.Strings(ok)
	return strings.Join(append(failed, ok...), "; ")
}

// containerStatus tells Mesos the pod's addresses, so that a framework sees
// where the pod answers without asking Kubernetes.
func containerStatus(pod *v1.Pod) *mesos.ContainerStatus {
	var ips []mesos.NetworkInfo_IPAddress
	for _, ip := range pod.Status.PodIPs {
		addr := ip.IP
		ips = append(ips, mesos.NetworkInfo_IPAddress{IPAddress: &addr})
	}
	if len(ips) == 0 {
		return nil
	}
	return &mesos.ContainerStatus{NetworkInfos: []mesos.NetworkInfo{{IPAddresses: ips}}}
}
