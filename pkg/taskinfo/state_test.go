package taskinfo

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// TestTerminal: the states a task can come back from are the live ones;
// every other state, known or not, ends the task and its pod.
func TestTerminal(t *testing.T) {
	live := map[mesos.TaskState]bool{
		mesos.TASK_STAGING: true, mesos.TASK_STARTING: true, mesos.TASK_RUNNING: true,
		mesos.TASK_KILLING: true, mesos.TASK_UNREACHABLE: true,
	}
	for v, name := range mesos.TaskState_name {
		s := mesos.TaskState(v)
		if got := Terminal(s); got == live[s] {
			t.Errorf("Terminal(%s) = %v", name, got)
		}
	}
	if !Terminal(mesos.TaskState(999)) {
		t.Error("a state this code does not know is not terminal")
	}
}

func TestPodUIDInvertsTaskID(t *testing.T) {
	if got := PodUID(TaskID("3f2a-uid")); got != "3f2a-uid" {
		t.Errorf("PodUID(TaskID(uid)) = %q", got)
	}
}
