package pods

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// masterView is a framework whose live tasks are what the master believes,
// as the driver keeps them (ObserveStatus); it records KILLs and the tasks
// the master was asked about.
type masterView struct {
	killRecorder
	mu    sync.Mutex
	live  map[string]bool
	asked []string
}

func (m *masterView) PodTasks(uid types.UID) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id := range m.live {
		if taskinfo.PodUID(id) == uid {
			out = append(out, id)
		}
	}
	return out
}

func (m *masterView) ReconcileTasks(_ context.Context, tasks map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id := range tasks {
		m.asked = append(m.asked, id)
	}
	return nil
}

func (m *masterView) askedAbout() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.asked)
}

// ended is the master's status of a task that ended, seen by the driver
// first (ObserveStatus) and then handed to the controller.
func (m *masterView) ended(t *testing.T, c *Controller, task string, state mesos.TaskState) {
	t.Helper()
	m.mu.Lock()
	delete(m.live, task)
	m.mu.Unlock()
	if err := c.TaskStatus(context.Background(), status(task, state)); err != nil {
		t.Fatal(err)
	}
}

// deletingPod is web-0 as the kubelet leaves it once its containers
// stopped: Failed, deleted with grace 0, held by the task finalizer.
func deletingPod(task, node string) *v1.Pod {
	zero := int64(0)
	now := metav1.Now()
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "u1",
		Finalizers: []string{"example.com/other", taskinfo.TaskFinalizer}, DeletionTimestamp: &now, DeletionGracePeriodSeconds: &zero},
		Spec:   v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: node},
		Status: v1.PodStatus{Phase: v1.PodFailed}}
	if task != "" {
		p.Annotations = map[string]string{taskinfo.TaskIDAnnotation: task}
	}
	return p
}

// heldPodEnv runs a controller over web-0, deletingPod(task, node), with
// the master counting the tasks live live.
func heldPodEnv(t *testing.T, reconciled func() bool, task, node string, live ...string) (*Controller, *masterView, *fake.Clientset) {
	t.Helper()
	client := fake.NewSimpleClientset(deletingPod(task, node))
	fw := &masterView{live: map[string]bool{}}
	for _, id := range live {
		fw.live[id] = true
	}
	c := New(Config{Client: client, SchedulerName: "mesos-scheduler", Framework: fw, Reconciled: reconciled})
	run(t, c)
	return c, fw, client
}

func finalizersOf(t *testing.T, client *fake.Clientset) []string {
	t.Helper()
	p, err := client.CoreV1().Pods("default").Get(context.Background(), "web-0", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return p.Finalizers
}

func held(t *testing.T, client *fake.Clientset) bool {
	return slices.Contains(finalizersOf(t, client), taskinfo.TaskFinalizer)
}

// TestDeletedPodWaitsForMesosToEndItsTask: the kubelet stopped web-0 and
// deleted it, but the master still counts its task live (the executor's
// TASK_KILLED waits in the agent behind a lost acknowledgement). The pod
// stays, so no new web-0 can be created, until the master reports the end;
// then the broker removes its own finalizer and only its own.
func TestDeletedPodWaitsForMesosToEndItsTask(t *testing.T) {
	task := taskinfo.TaskID("u1", "r-1")
	c, fw, client := heldPodEnv(t, nil, task, "n1", task)
	// The deletion is final: the task the master counts live is killed
	// (what the object's removal did before), and the pod is kept.
	eventually(t, "the KILL of the task of the deleted pod", func() bool { return len(fw.killed()) > 0 })
	if !held(t, client) {
		t.Fatalf("the pod was let go while the master counts its task %s live; finalizers %v", task, finalizersOf(t, client))
	}
	fw.ended(t, c, task, mesos.TASK_KILLED)
	eventually(t, "the broker to let the pod go once its task ended", func() bool { return !held(t, client) })
	if got := finalizersOf(t, client); !slices.Equal(got, []string{"example.com/other"}) {
		t.Errorf("finalizers after the release: %v, want only the other owner's", got)
	}
}

// TestDeletedPodWithAnotherLiveAttempt: the attempt web-0 is bound as
// ended, but an earlier attempt is still live in the master's view: the pod
// is held until that one ends too.
func TestDeletedPodWithAnotherLiveAttempt(t *testing.T) {
	first, second := taskinfo.TaskID("u1", "r-1"), taskinfo.TaskID("u1", "r-2")
	c, fw, client := heldPodEnv(t, nil, second, "n1", first, second)
	fw.ended(t, c, second, mesos.TASK_KILLED)
	eventually(t, "the KILL of the earlier attempt", func() bool {
		return slices.ContainsFunc(fw.killed(), func(k string) bool { return strings.HasPrefix(k, first+"@") })
	})
	if !held(t, client) {
		t.Fatalf("the pod was let go while its earlier attempt %s is live", first)
	}
	fw.ended(t, c, first, mesos.TASK_KILLED)
	eventually(t, "the release once both attempts ended", func() bool { return !held(t, client) })
}

// TestDeletedPodOfAnAttemptTheBrokerNeverHeardOf: a broker that started
// after web-0's task ended knows nothing of it; it asks the master, and the
// answer (the task is unknown there: ended long ago) lets the pod go.
func TestDeletedPodOfAnAttemptTheBrokerNeverHeardOf(t *testing.T) {
	task := taskinfo.TaskID("u1", "r-1")
	c, fw, client := heldPodEnv(t, nil, task, "n1")
	eventually(t, "the master to be asked about the attempt", func() bool { return slices.Contains(fw.askedAbout(), task) })
	if !held(t, client) {
		t.Fatal("the pod was let go before the master said anything of its task")
	}
	fw.ended(t, c, task, mesos.TASK_GONE)
	eventually(t, "the release after the master's answer", func() bool { return !held(t, client) })
}

// TestUnboundDeletedPodWaitsForReconciliation: an unbound pod has no
// attempt to wait for, but a launch an earlier broker made is known only
// once the subscription was reconciled.
func TestUnboundDeletedPodWaitsForReconciliation(t *testing.T) {
	var reconciled atomic.Bool
	c, _, client := heldPodEnv(t, reconciled.Load, "", "")
	// The controller looked at it (it queues a pod held for its tasks on
	// every event) and must wait: hand it one more event to be sure it ran.
	p, _ := client.CoreV1().Pods("default").Get(context.Background(), "web-0", metav1.GetOptions{})
	p.Labels = map[string]string{"touched": "1"}
	if _, err := client.CoreV1().Pods("default").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the controller to see the update", func() bool {
		q := c.podByUID("u1")
		return q != nil && q.Labels["touched"] == "1"
	})
	if !held(t, client) {
		t.Fatal("the unbound pod was let go before the subscription was reconciled")
	}
	reconciled.Store(true)
	eventually(t, "the release once reconciled", func() bool { return !held(t, client) })
}

// TestReleasedPodIsNotKilledAgain: once the broker let a pod go (every task
// ended), the object's removal kills nothing; a pod that lost the finalizer
// some other way still has its tasks killed on removal.
func TestReleasedPodIsNotKilledAgain(t *testing.T) {
	task := taskinfo.TaskID("u1", "r-1")
	c, fw, client := heldPodEnv(t, nil, task, "n1")
	fw.ended(t, c, task, mesos.TASK_KILLED)
	eventually(t, "the release", func() bool { return !held(t, client) })
	// Before its end was heard, the final deletion may have killed it:
	// only what follows the release counts.
	fw.killRecorder.mu.Lock()
	fw.kills = nil
	fw.killRecorder.mu.Unlock()
	// The API server removes the object once its last finalizer is gone.
	if err := client.CoreV1().Pods("default").Delete(context.Background(), "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod whose finalizer someone else removed: its removal still kills.
	// The informer hands events on in order, so once its KILL is seen,
	// web-0's removal was handled.
	other := taskinfo.TaskID("u2", "r-1")
	if _, err := client.CoreV1().Pods("default").Create(context.Background(), &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "u2", Annotations: map[string]string{taskinfo.TaskIDAnnotation: other}},
		Spec:       v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the controller to see web-1", func() bool { return c.podByUID("u2") != nil })
	if err := client.CoreV1().Pods("default").Delete(context.Background(), "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the KILL of web-1's task", func() bool {
		return slices.ContainsFunc(fw.killed(), func(k string) bool { return strings.HasPrefix(k, other+"@") })
	})
	for _, k := range fw.killed() {
		if strings.HasPrefix(k, task+"@") {
			t.Errorf("web-0's task killed after the broker released the pod with every task ended: %v", k)
		}
	}
}

// TestStaleCopyDoesNotUndoTheRelease: a sync working from the informer's
// copy from before the release tries again; that must neither fail nor
// make the broker forget it let the pod go (whose removal would then kill
// its ended task once more).
func TestStaleCopyDoesNotUndoTheRelease(t *testing.T) {
	task := taskinfo.TaskID("u1", "r-1")
	stale := deletingPod(task, "n1")
	client := fake.NewSimpleClientset(stale.DeepCopy())
	fw := &masterView{live: map[string]bool{}}
	c := New(Config{Client: client, SchedulerName: "mesos-scheduler", Framework: fw})
	ctx := context.Background()
	if err := c.removeFinalizer(ctx, stale); err != nil {
		t.Fatalf("the release: %v", err)
	}
	if err := c.removeFinalizer(ctx, stale); err != nil {
		t.Errorf("the second try from the stale copy: %v", err)
	}
	c.deleted(stale)
	if err := c.sync(ctx, stale.UID); err != nil {
		t.Fatal(err)
	}
	if k := fw.killed(); len(k) != 0 {
		t.Errorf("KILLs on the removal of a pod released with every task ended: %v", k)
	}
}
