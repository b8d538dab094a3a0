package pods

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
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

func (k *killRecorder) PodTasks(types.UID) []string { return nil }
func (k *killRecorder) ReconcileTasks(context.Context, map[string]string) error {
	return nil
}
func (k *killRecorder) SetPending(bool) {}
func (k *killRecorder) Revive()         {}
func (k *killRecorder) KillTask(_ context.Context, taskID, agentID, reason string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kills = append(k.kills, taskID+"@"+agentID+"/"+reason)
	return nil
}

func (k *killRecorder) killed() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.kills)
}

// run starts the controller's informers and workers until the test ends.
func run(t *testing.T, c *Controller) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	if !cache.WaitForCacheSync(ctx.Done(), c.HasSynced) {
		t.Fatal("informers did not sync")
	}
}

// eventually polls cond for up to a minute (a deadline, not a measurement).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, time.Minute, true,
		func(context.Context) (bool, error) { return cond(), nil }); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pendingRecorder records what the controller tells the framework about
// pending pods.
type pendingRecorder struct {
	killRecorder
	mu      sync.Mutex
	pending bool
	revives int
}

func (p *pendingRecorder) SetPending(v bool) { p.mu.Lock(); p.pending = v; p.mu.Unlock() }
func (p *pendingRecorder) Revive()           { p.mu.Lock(); p.pending = true; p.revives++; p.mu.Unlock() }
func (p *pendingRecorder) state() (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending, p.revives
}

// TestGatedPodIsNotPending: a pod with scheduling gates cannot be scheduled,
// so it must not make k8sm REVIVE and hold offers; once its gates are gone it
// is pending like any other.
func TestGatedPodIsNotPending(t *testing.T) {
	fw := &pendingRecorder{}
	c := New(Config{Client: fake.NewSimpleClientset(), SchedulerName: "mesos-scheduler", Framework: fw})
	run(t, c)
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gated", UID: "u1"},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", SchedulingGates: []v1.PodSchedulingGate{{Name: "example.com/hold"}}}}
	c.observe(pod)
	if pending, revives := fw.state(); pending || revives != 0 {
		t.Fatalf("a gated pod made the framework pending=%v with %d REVIVEs", pending, revives)
	}
	ungated := pod.DeepCopy()
	ungated.Spec.SchedulingGates = nil
	c.observe(ungated)
	if pending, revives := fw.state(); !pending || revives != 1 {
		t.Fatalf("the pod without its gates left the framework pending=%v with %d REVIVEs, want pending after one", pending, revives)
	}
}

// TestDeletedUnboundPodKillsItsTask: the broker launches a pod's task before
// the scheduler binds it, so a pod deleted in between has a running task but
// no node. Its deletion must kill that task at once (the framework finds the
// agent it launched on), not leave it to the next reconciliation.
func TestDeletedUnboundPodKillsItsTask(t *testing.T) {
	fw := &killRecorder{}
	c := New(Config{Client: fake.NewSimpleClientset(), SchedulerName: "mesos-scheduler", Framework: fw})
	run(t, c)
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "u1"},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler"}}
	c.observe(pod)
	c.deleted(pod)
	// And a deletion the informer only learnt of late (tombstone).
	late := pod.DeepCopy()
	late.UID = "u2"
	c.deleted(cache.DeletedFinalStateUnknown{Key: "default/web-1", Obj: late})

	want := []string{"pod.u1@/pod-deleted", "pod.u2@/pod-deleted"}
	eventually(t, "both tasks killed", func() bool { return len(fw.killed()) >= len(want) })
	got := fw.killed()
	slices.Sort(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kills %v, want %v", got, want)
	}
}

// gatedKiller is a framework whose KILLs report how many run at once. The
// first `workers` KILLs wait until that many are in flight together, so a
// controller that kills one at a time never gets past max in-flight 1 (the
// first KILL gives up waiting after holdFor). The first attempt for each
// task in failOnce fails, as a KILL does while Mesos is unreachable.
type gatedKiller struct {
	workers  int
	holdFor  time.Duration
	failOnce map[string]bool

	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	held        int
	full        chan struct{}
	attempts    map[string]int
	killed      map[string]string // task -> "<agent>/<reason>"
}

func newGatedKiller(workers int, failOnce ...string) *gatedKiller {
	g := &gatedKiller{workers: workers, holdFor: 30 * time.Second, failOnce: map[string]bool{},
		full: make(chan struct{}), attempts: map[string]int{}, killed: map[string]string{}}
	for _, id := range failOnce {
		g.failOnce[id] = true
	}
	return g
}

func (g *gatedKiller) PodTasks(types.UID) []string { return nil }
func (g *gatedKiller) ReconcileTasks(context.Context, map[string]string) error {
	return nil
}
func (g *gatedKiller) SetPending(bool) {}
func (g *gatedKiller) Revive()         {}
func (g *gatedKiller) KillTask(ctx context.Context, taskID, agentID, reason string) error {
	g.mu.Lock()
	g.inFlight++
	g.maxInFlight = max(g.maxInFlight, g.inFlight)
	if g.inFlight == g.workers && g.held < g.workers+1 {
		close(g.full)
		g.held = g.workers + 1 // closed once
	}
	hold := g.held < g.workers
	if hold {
		g.held++
	}
	g.attempts[taskID]++
	fail := g.failOnce[taskID] && g.attempts[taskID] == 1
	g.mu.Unlock()
	if hold {
		select {
		case <-g.full:
		case <-time.After(g.holdFor):
		case <-ctx.Done():
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	if fail {
		return fmt.Errorf("killing task %s: Mesos master unreachable", taskID)
	}
	g.killed[taskID] = agentID + "/" + reason
	return nil
}

// TestManyDeletedPodsKilledConcurrently: 200 pods deleted at once all have
// their tasks killed; the KILLs run side by side, never more than the
// workers; a failed KILL is retried at once with backoff, not after the
// informer's 10-minute resync.
func TestManyDeletedPodsKilledConcurrently(t *testing.T) {
	const workers, n = 4, 200
	client := fake.NewSimpleClientset(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1",
		Annotations: map[string]string{taskinfo.AgentIDAnnotation: "agent-1"}}})
	failing := []string{taskinfo.TaskID("uid-7", ""), taskinfo.TaskID("uid-100", "")}
	fw := newGatedKiller(workers, failing...)
	c := New(Config{Client: client, SchedulerName: "mesos-scheduler", Framework: fw,
		Workers: workers, Resync: 10 * time.Minute})
	want := map[string]string{}
	ctx := context.Background()
	for i := range n {
		p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("web-%d", i), UID: types.UID(fmt.Sprintf("uid-%d", i))},
			Spec: v1.PodSpec{SchedulerName: "mesos-scheduler"}}
		want[taskinfo.TaskID(p.UID, "")] = "/pod-deleted"
		if i%2 == 0 { // half bound: their KILL names the agent
			p.Spec.NodeName = "n1"
			want[taskinfo.TaskID(p.UID, "")] = "agent-1/pod-deleted"
		}
		if _, err := client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	run(t, c)
	eventually(t, "pods in the informer", func() bool { return len(c.informer.GetStore().List()) == n })
	for i := range n {
		if err := client.CoreV1().Pods("default").Delete(ctx, fmt.Sprintf("web-%d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		// The fake API server's watch holds 100 events and panics when
		// full: let the informer catch up every 50 deletions.
		if i%50 == 49 {
			left := n - i - 1
			eventually(t, "deletions seen", func() bool { return len(c.informer.GetStore().List()) == left })
		}
	}
	eventually(t, "every task killed", func() bool {
		fw.mu.Lock()
		defer fw.mu.Unlock()
		return len(fw.killed) == n
	})

	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.maxInFlight < 2 || fw.maxInFlight > workers {
		t.Errorf("at most %d KILLs in flight at once, want between 2 and %d (the workers)", fw.maxInFlight, workers)
	}
	for task, w := range want {
		if got := fw.killed[task]; got != w {
			t.Errorf("task %s killed as %q, want %q", task, got, w)
		}
	}
	for _, task := range failing {
		if fw.attempts[task] != 2 {
			t.Errorf("task %s: %d KILL attempts, want 2 (one failed, one retried)", task, fw.attempts[task])
		}
	}
}

// TestPodDeletedWithoutKubeletEndedWithRetries: a pod being deleted on a
// node where no kubelet runs has its task killed by the broker; when it
// cannot yet tell whether a kubelet runs, it tries again (backoff) instead
// of waiting for a resync. A pod that already ended is removed.
func TestPodDeletedWithoutKubeletEndedWithRetries(t *testing.T) {
	now := metav1.Now()
	running := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "u1", DeletionTimestamp: &now, Finalizers: []string{"test"}},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: "n1"}, Status: v1.PodStatus{Phase: v1.PodRunning}}
	ended := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "u2", DeletionTimestamp: &now, Finalizers: []string{"test"}},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: "n1"}, Status: v1.PodStatus{Phase: v1.PodFailed}}
	client := fake.NewSimpleClientset(running, ended, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1",
		Annotations: map[string]string{taskinfo.AgentIDAnnotation: "agent-1"}}})
	fw := &killRecorder{}
	var mu sync.Mutex
	asked := 0
	c := New(Config{Client: client, SchedulerName: "mesos-scheduler", Framework: fw,
		Resync: 10 * time.Minute,
		KubeletRuns: func(context.Context, string) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			asked++
			if asked == 1 {
				return false, errors.New("reading the Lease: connection refused")
			}
			return false, nil
		}})
	run(t, c)
	eventually(t, "the running pod's task killed", func() bool { return slices.Contains(fw.killed(), "pod.u1@agent-1/pod-terminating") })
	eventually(t, "the ended pod removed", func() bool {
		_, err := client.CoreV1().Pods("default").Get(context.Background(), "web-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

// TestEndedPodBeingDeletedIsRemovedWhereAKubeletRuns: the StatefulSet
// deletes its pod that failed when its executor was killed; the node has
// a kubelet again (the next executor's), which never knew the pod. The
// broker removes it, so the identity is recreated (docs/reliability.md's
// db-1); a running pod being deleted stays the kubelet's.
func TestEndedPodBeingDeletedIsRemovedWhereAKubeletRuns(t *testing.T) {
	now := metav1.Now()
	failed := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db-1", UID: "u1", DeletionTimestamp: &now, Finalizers: []string{"test"}},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: "n1"}, Status: v1.PodStatus{Phase: v1.PodFailed}}
	running := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db-0", UID: "u2", DeletionTimestamp: &now, Finalizers: []string{"test"}},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: "n1"}, Status: v1.PodStatus{Phase: v1.PodRunning}}
	client := fake.NewSimpleClientset(failed, running, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1",
		Annotations: map[string]string{taskinfo.AgentIDAnnotation: "agent-1"}}})
	fw := &killRecorder{}
	c := New(Config{Client: client, SchedulerName: "mesos-scheduler", Framework: fw, Resync: 10 * time.Minute,
		KubeletRuns: func(context.Context, string) (bool, error) { return true, nil }})
	run(t, c)
	eventually(t, "the failed pod removed", func() bool {
		_, err := client.CoreV1().Pods("default").Get(context.Background(), "db-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if _, err := client.CoreV1().Pods("default").Get(context.Background(), "db-0", metav1.GetOptions{}); err != nil {
		t.Errorf("the running pod being deleted was not left to its kubelet: %v", err)
	}
	if k := fw.killed(); slices.Contains(k, "pod.u2@agent-1/pod-terminating") {
		t.Errorf("the running pod's task was killed: %v", k)
	}
}

// TestLaunchFailureEndsPodWithMesosReasonAndTime: what Mesos 1.11 (and
// mesos-sim, TestFetchFailureFailsTasks) sends when an executor cannot be
// fetched — TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED, SOURCE_AGENT, the
// containerizer's message and the agent's timestamp — fails the pod saying
// so, with its Ready condition dated when the task failed, not when the
// broker got the update (a failed-over broker gets old updates resent). A
// resend of the same update changes nothing.
func TestLaunchFailureEndsPodWithMesosReasonAndTime(t *testing.T) {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "u1"},
		Spec:   v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: "agent-1"},
		Status: v1.PodStatus{Phase: v1.PodPending}}
	client := fake.NewSimpleClientset(pod)
	c := New(Config{Client: client, SchedulerName: "mesos-scheduler", Framework: &killRecorder{},
		KubeletRuns: func(context.Context, string) (bool, error) { return true, nil }})
	run(t, c)
	eventually(t, "the pod in the informer", func() bool { return c.podByUID("u1") != nil })

	failedAt := time.Now().Add(-10 * time.Minute).Truncate(time.Second)
	msg := "Failed to launch container: Failed to fetch all URIs for container 'c1': exited with status 1"
	st := &mesos.TaskStatus{TaskID: mesos.TaskID{Value: taskinfo.TaskID("u1", "")}, AgentID: &mesos.AgentID{Value: "S0"},
		State: mesos.TASK_FAILED.Enum(), Source: mesos.SOURCE_AGENT.Enum(), Reason: mesos.REASON_CONTAINER_LAUNCH_FAILED.Enum(),
		Message: &msg, Timestamp: ptrFloat(float64(failedAt.UnixNano()) / 1e9)}
	if err := c.TaskStatus(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	got, err := client.CoreV1().Pods("default").Get(context.Background(), "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != v1.PodFailed || got.Status.Reason != ReasonTaskFailed {
		t.Errorf("pod %s/%s, want Failed/%s", got.Status.Phase, got.Status.Reason, ReasonTaskFailed)
	}
	for _, want := range []string{msg, "REASON_CONTAINER_LAUNCH_FAILED"} {
		if !strings.Contains(got.Status.Message, want) {
			t.Errorf("pod message %q does not say %q", got.Status.Message, want)
		}
	}
	var ready *v1.PodCondition
	for i := range got.Status.Conditions {
		if got.Status.Conditions[i].Type == v1.PodReady {
			ready = &got.Status.Conditions[i]
		}
	}
	if ready == nil || !ready.LastTransitionTime.Time.Equal(failedAt) {
		t.Fatalf("Ready condition %+v, want False since the task failed at %v", ready, failedAt)
	}

	// Resent after a broker restart (not acknowledged yet): nothing moves.
	eventually(t, "the failed pod in the informer", func() bool {
		p := c.podByUID("u1")
		return p != nil && p.Status.Phase == v1.PodFailed
	})
	resent := *st
	resent.Timestamp = ptrFloat(float64(time.Now().UnixNano()) / 1e9)
	if err := c.TaskStatus(context.Background(), &resent); err != nil {
		t.Fatal(err)
	}
	again, _ := client.CoreV1().Pods("default").Get(context.Background(), "web-0", metav1.GetOptions{})
	if again.ResourceVersion != got.ResourceVersion {
		t.Errorf("a resent update rewrote the ended pod: %+v", again.Status)
	}
}

func ptrFloat(f float64) *float64 { return &f }

// attemptsEnv is a pod u1 on node n1 (agent-1) and a controller over it.
func attemptsEnv(t *testing.T, annotations map[string]string, node string) (*Controller, *killRecorder, *fake.Clientset) {
	t.Helper()
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "u1", Annotations: annotations},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: node}, Status: v1.PodStatus{Phase: v1.PodPending}}
	client := fake.NewSimpleClientset(p, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1",
		Annotations: map[string]string{taskinfo.AgentIDAnnotation: "agent-1"}}})
	fw := &killRecorder{}
	c := New(Config{Client: client, SchedulerName: "mesos-scheduler", Framework: fw, BoundGrace: -1,
		AgentHostname: func(string) (string, bool) { return "n1", true }})
	run(t, c)
	return c, fw, client
}

func phase(t *testing.T, client *fake.Clientset) v1.PodPhase {
	t.Helper()
	p, err := client.CoreV1().Pods("default").Get(context.Background(), "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Status.Phase
}

func status(task string, state mesos.TaskState) *mesos.TaskStatus {
	return &mesos.TaskStatus{TaskID: mesos.TaskID{Value: task}, AgentID: &mesos.AgentID{Value: "agent-1"}, State: state.Enum()}
}

// TestEarlierAttemptLeavesThePod: the pod runs as its second attempt (the
// Binding recorded it); the first attempt's end does not fail it, and the
// first attempt, still running, is killed. Reconciliation asks about the
// attempt that runs.
func TestEarlierAttemptLeavesThePod(t *testing.T) {
	first, second := taskinfo.TaskID("u1", "r-1"), taskinfo.TaskID("u1", "r-2")
	c, fw, client := attemptsEnv(t, map[string]string{taskinfo.TaskIDAnnotation: second}, "n1")
	ctx := context.Background()
	if err := c.TaskStatus(ctx, status(first, mesos.TASK_RUNNING)); err != nil {
		t.Fatal(err)
	}
	if got := fw.killed(); !slices.Equal(got, []string{first + "@agent-1/superseded"}) {
		t.Errorf("kills %v, want the earlier attempt %s killed", got, first)
	}
	if err := c.TaskStatus(ctx, status(first, mesos.TASK_KILLED)); err != nil {
		t.Fatal(err)
	}
	if got := phase(t, client); got != v1.PodPending {
		t.Errorf("pod %s after its earlier attempt was killed, want Pending (it runs as %s)", got, second)
	}
	tasks, err := c.KnownTasks(ctx)
	if err != nil || len(tasks) != 1 || tasks[0].ID != second {
		t.Errorf("KnownTasks = %v, %v; want the attempt that runs, %s", tasks, err, second)
	}
	if err := c.TaskStatus(ctx, status(second, mesos.TASK_FAILED)); err != nil {
		t.Fatal(err)
	}
	if got := phase(t, client); got != v1.PodFailed {
		t.Errorf("pod %s after the attempt it runs as failed, want Failed", got)
	}
}

// TestUnboundAttemptEndsThePodOnlyOnceBound: a status of an attempt whose
// pod is not bound (the ACCEPT's outcome was being settled, or the launch
// failed and the pod is scheduled again) does not fail the pod: a bare pod
// would be lost. If the pod is then bound as that attempt, it ends.
func TestUnboundAttemptEndsThePodOnlyOnceBound(t *testing.T) {
	task := taskinfo.TaskID("u1", "r-1")
	c, _, client := attemptsEnv(t, nil, "")
	ctx := context.Background()
	if err := c.TaskStatus(ctx, status(task, mesos.TASK_UNKNOWN)); err != nil {
		t.Fatal(err)
	}
	if got := phase(t, client); got != v1.PodPending {
		t.Fatalf("unbound pod %s after its attempt's TASK_UNKNOWN, want Pending (the scheduler tries again)", got)
	}
	p, _ := client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
	p.Spec.NodeName = "n1"
	p.Annotations = map[string]string{taskinfo.TaskIDAnnotation: task}
	if _, err := client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod bound as the ended attempt fails", func() bool { return phase(t, client) == v1.PodFailed })
}

// TestAttemptEndedBeforeTheInformerSawThePod: an attempt ends before the
// broker's informer holds its pod — the master refuses a launch as it takes
// the ACCEPT (TASK_DROPPED, invalid offers) and says so once; an agent
// drops a task sent to an executor that is terminating (the long chaos run:
// an executor SIGKILL, then the API server restarted, so the informer
// lagged). The pod the scheduler then binds as that attempt still ends, at
// once, rather than wait bound and task-less for the next periodic
// reconciliation (5 minutes).
func TestAttemptEndedBeforeTheInformerSawThePod(t *testing.T) {
	for _, tc := range []struct {
		name, msg, reason string
		source            mesos.TaskStatus_Source
		why               mesos.TaskStatus_Reason
	}{
		{"master refused the launch", "Task launched with invalid offers: Offer o-1 is no longer valid", "invalid offers",
			mesos.SOURCE_MASTER, mesos.REASON_INVALID_OFFERS},
		{"agent dropped it: executor terminating", "Executor terminating", "Executor terminating",
			mesos.SOURCE_AGENT, mesos.REASON_EXECUTOR_TERMINATED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			task := taskinfo.TaskID("u1", "r-1")
			c, _, client := attemptsEnv(t, nil, "")
			ctx := context.Background()
			p, err := client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// The informer lags: it does not hold the pod yet.
			if err := c.informer.GetIndexer().Delete(p); err != nil {
				t.Fatal(err)
			}
			st := status(task, mesos.TASK_DROPPED)
			msg := tc.msg
			st.Source, st.Reason, st.Message = tc.source.Enum(), tc.why.Enum(), &msg
			if err := c.TaskStatus(ctx, st); err != nil {
				t.Fatal(err)
			}
			p.Spec.NodeName = "n1"
			p.Annotations = map[string]string{taskinfo.TaskIDAnnotation: task}
			if _, err := client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the pod bound as the ended attempt fails", func() bool { return phase(t, client) == v1.PodFailed })
			got, _ := client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
			if got.Status.Reason != ReasonTaskLost || !strings.Contains(got.Status.Message, tc.reason) {
				t.Errorf("pod %s: %q, want %s with Mesos' message", got.Status.Reason, got.Status.Message, ReasonTaskLost)
			}
		})
	}
}

// TestPodWrittenLiveAfterItsAttemptEndedIsEndedAgain: an operator marks an
// agent gone just as its kubelet reports the pod running; the broker fails
// the pod (TASK_GONE_BY_OPERATOR), then the kubelet's status manager,
// patching from its older view, writes Running back, and dies with its
// agent. Mesos says nothing more of the task: the broker must end the pod
// again, or its ReplicaSet counts it live until the pod GC deletes it.
func TestPodWrittenLiveAfterItsAttemptEndedIsEndedAgain(t *testing.T) {
	task := taskinfo.TaskID("u1", "r-1")
	c, _, client := attemptsEnv(t, map[string]string{taskinfo.TaskIDAnnotation: task}, "n1")
	ctx := context.Background()
	eventually(t, "the pod in the informer", func() bool { return c.podByUID("u1") != nil })
	st := status(task, mesos.TASK_GONE_BY_OPERATOR)
	st.Reason = mesos.REASON_AGENT_REMOVED_BY_OPERATOR.Enum()
	if err := c.TaskStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	if got := phase(t, client); got != v1.PodFailed {
		t.Fatalf("pod %s after TASK_GONE_BY_OPERATOR of the attempt it runs as, want Failed", got)
	}

	// The dying kubelet's late write.
	p, err := client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase, p.Status.Reason, p.Status.Message = v1.PodRunning, "", ""
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod written Running after its attempt ended to be Failed again", func() bool {
		return phase(t, client) == v1.PodFailed
	})
	got, _ := client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
	if got.Status.Reason != ReasonTaskLost || !strings.Contains(got.Status.Message, "TASK_GONE_BY_OPERATOR") {
		t.Errorf("pod %s: %q, want %s saying the task is TASK_GONE_BY_OPERATOR", got.Status.Reason, got.Status.Message, ReasonTaskLost)
	}
}

// TestBindingBetweenStatusReadAndRemember: an attempt's end arrives while its
// pod is unbound, and the pod's Binding reaches the informer after the
// status handler read the pod but before it kept the end. The Binding's
// informer event then finds no end to apply, and the end, once kept, must
// still end the pod. It did not: the pod stayed bound and task-less until the
// periodic reconciliation, by when the master, its update acknowledged, had
// forgotten the task (TASK_GONE: MesosTaskLost instead of Mesos' own reason;
// a CI run's TestBrokerContainerLaunchFailure, the fetch failing at once).
func TestBindingBetweenStatusReadAndRemember(t *testing.T) {
	task := taskinfo.TaskID("u1", "r-1")
	c, _, client := attemptsEnv(t, nil, "")
	ctx := context.Background()
	afterStatusRead = func() {
		p, err := client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			t.Error(err)
			return
		}
		p.Spec.NodeName = "n1"
		p.Annotations = map[string]string{taskinfo.TaskIDAnnotation: task}
		if _, err := client.CoreV1().Pods("default").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Error(err)
			return
		}
		eventually(t, "the informer holds the bound pod", func() bool {
			got := c.podByUID("u1")
			return got != nil && got.Spec.NodeName == "n1"
		})
	}
	t.Cleanup(func() { afterStatusRead = func() {} })
	st := status(task, mesos.TASK_FAILED)
	msg := "Failed to launch container: Failed to fetch all URIs"
	st.Source, st.Reason, st.Message = mesos.SOURCE_AGENT.Enum(), mesos.REASON_CONTAINER_LAUNCH_FAILED.Enum(), &msg
	if err := c.TaskStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the pod bound as the ended attempt fails", func() bool { return phase(t, client) == v1.PodFailed })
	got, _ := client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
	if got.Status.Reason != ReasonTaskFailed || !strings.Contains(got.Status.Message, "Failed to fetch all URIs") {
		t.Errorf("pod %s: %q, want %s with Mesos' message", got.Status.Reason, got.Status.Message, ReasonTaskFailed)
	}
}
