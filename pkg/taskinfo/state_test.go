package taskinfo

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	for _, attempt := range []string{"", "9c1e-17"} {
		if got := PodUID(TaskID("3f2a-uid", attempt)); got != "3f2a-uid" {
			t.Errorf("PodUID(TaskID(uid, %q)) = %q", attempt, got)
		}
	}
	if got := PodUID("other.task"); got != "" {
		t.Errorf("PodUID of a task that is not a pod's = %q, want empty", got)
	}
}

func TestAttemptsAreDistinctTasks(t *testing.T) {
	if a, b := TaskID("u1", "r-1"), TaskID("u1", "r-2"); a == b {
		t.Errorf("two attempts of one pod share task id %s", a)
	}
}

func TestPodTaskIDIsTheBoundAttempt(t *testing.T) {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1"}}
	if got := PodTaskID(p); got != "pod.u1" {
		t.Errorf("PodTaskID of a pod bound without an attempt = %q, want pod.u1", got)
	}
	p.Annotations = map[string]string{TaskIDAnnotation: TaskID("u1", "r-2")}
	if got := PodTaskID(p); got != "pod.u1.r-2" {
		t.Errorf("PodTaskID = %q, want pod.u1.r-2", got)
	}
	p.Annotations[TaskIDAnnotation] = TaskID("u2", "r-2")
	if got := PodTaskID(p); got != "pod.u1" {
		t.Errorf("PodTaskID with another pod's task in the annotation = %q, want pod.u1 (the annotation ignored)", got)
	}
}
