package pods

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// TestPhaseOf: a finished task succeeds its pod; every other end fails it,
// with a reason saying how the task ended; live states end nothing.
func TestPhaseOf(t *testing.T) {
	for state, want := range map[mesos.TaskState]string{
		mesos.TASK_FINISHED:         "Succeeded/" + ReasonTaskFinished,
		mesos.TASK_FAILED:           "Failed/" + ReasonTaskFailed,
		mesos.TASK_ERROR:            "Failed/" + ReasonTaskFailed,
		mesos.TASK_KILLED:           "Failed/" + ReasonTaskKilled,
		mesos.TASK_LOST:             "Failed/" + ReasonTaskLost,
		mesos.TASK_GONE:             "Failed/" + ReasonTaskLost,
		mesos.TASK_GONE_BY_OPERATOR: "Failed/" + ReasonTaskLost,
		mesos.TASK_DROPPED:          "Failed/" + ReasonTaskLost,
		mesos.TASK_UNKNOWN:          "Failed/" + ReasonTaskLost,
	} {
		if !taskinfo.Terminal(state) {
			t.Errorf("%s is not terminal", state)
		}
		phase, reason := phaseOf(state)
		if got := string(phase) + "/" + reason; got != want {
			t.Errorf("%s: %s, want %s", state, got, want)
		}
	}
	// TASK_UNREACHABLE (partition-aware) keeps the pod: the task may come back.
	for _, s := range []mesos.TaskState{mesos.TASK_STAGING, mesos.TASK_STARTING, mesos.TASK_RUNNING, mesos.TASK_KILLING, mesos.TASK_UNREACHABLE} {
		if taskinfo.Terminal(s) {
			t.Errorf("%s is terminal", s)
		}
	}
}

// TestBoundAt: the binding's PodScheduled time counts, else creation.
func TestBoundAt(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	bound := created.Add(time.Hour)
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(created)}}
	if got := boundAt(p); !got.Equal(created) {
		t.Errorf("without PodScheduled: %v, want creation %v", got, created)
	}
	p.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(bound)}}
	if got := boundAt(p); !got.Equal(bound) {
		t.Errorf("with PodScheduled: %v, want %v", got, bound)
	}
}

type killRecorder struct {
	mu    sync.Mutex
	kills []string // "<task>@<agent>/<reason>"
}

func (k *killRecorder) SetPending(bool) {}
func (k *killRecorder) Revive()         {}
func (k *killRecorder) KillTask(_ context.Context, taskID, agentID, reason string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kills = append(k.kills, taskID+"@"+agentID+"/"+reason)
	return nil
}

// TestDeletedUnboundPodKillsItsTask: the broker launches a pod's task before
// the scheduler binds it, so a pod deleted in between has a running task but
// no node. Its deletion must kill that task at once (the framework finds the
// agent it launched on), not leave it to the next reconciliation.
func TestDeletedUnboundPodKillsItsTask(t *testing.T) {
	fw := &killRecorder{}
	c := New(Config{Client: fake.NewSimpleClientset(), SchedulerName: "mesos-scheduler", Framework: fw})
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "u1"},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler"}}
	c.observe(pod)
	c.deleted(pod)
	// And a deletion the informer only learnt of late (tombstone).
	late := pod.DeepCopy()
	late.UID = "u2"
	c.deleted(cache.DeletedFinalStateUnknown{Key: "default/web-1", Obj: late})

	fw.mu.Lock()
	defer fw.mu.Unlock()
	want := []string{"pod.u1@/pod-deleted", "pod.u2@/pod-deleted"}
	if fmt.Sprint(fw.kills) != fmt.Sprint(want) {
		t.Errorf("kills %v, want %v", fw.kills, want)
	}
}
