package framework_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/component-base/metrics/testutil"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/k8sm/k8sm/broker/framework"
	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	"github.com/k8sm/k8sm/broker/metrics"
	"github.com/k8sm/k8sm/broker/pods"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// sleepingExecutor is an executor that never subscribes to its agent: a
// real agent keeps the tasks sent to it TASK_STAGING (queued for the
// executor) until --executor_registration_timeout, as while it fetches a
// huge executor or when the executor hangs before registering.
type sleepingExecutor struct{}

func (sleepingExecutor) NewExecutorInfo(fw mesos.FrameworkID, role string) *mesos.ExecutorInfo {
	return taskinfo.NewExecutorInfo(fw, taskinfo.ExecutorConfig{Command: "/bin/sleep", ExtraArgs: []string{"3600"}, Resources: podresources.ToMesos(testExecutor, role)})
}

// stagingSim has a hollow agent, node-a, whose tasks run at once, and a
// real one, node-b, that starts the sleeping executor, whose tasks stay
// TASK_STAGING (its registration timeout is an hour).
func stagingSim(t *testing.T) *mesossim.Sim {
	t.Helper()
	res, err := mesossim.ParseResources("cpus:4;mem:4096;disk:10000;ports:[31000-32000]")
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	sim, err := mesossim.Start(sctx, mesossim.Config{
		WorkDir: t.TempDir(),
		Master:  master.Config{HeartbeatInterval: 200 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: 100 * time.Millisecond},
		Agents: []agent.Config{
			{Hostname: "node-a", Resources: res, Hollow: true, StatusUpdateRetryInterval: 200 * time.Millisecond},
			{Hostname: "node-b", Resources: res, StatusUpdateRetryInterval: 200 * time.Millisecond, ExecutorRegistrationTimeout: time.Hour},
		},
	})
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); scancel() })
	return sim
}

// podController runs the broker's pod controller over client as the
// broker's StatusSink, with the launch timeout and clock given; its context
// ends with the test or with stop.
type podController struct {
	c    *pods.Controller
	stop context.CancelFunc
	done chan struct{}
}

func withPodController(t *testing.T, client *fake.Clientset, timeout time.Duration, clk *testingclock.FakeClock, pc **podController) func(*framework.Driver) framework.StatusSink {
	return func(d *framework.Driver) framework.StatusSink {
		c := pods.New(pods.Config{Client: client, SchedulerName: "mesos-scheduler", Framework: d, LaunchTimeout: timeout, Clock: clk})
		ctx, cancel := context.WithCancel(context.Background())
		p := &podController{c: c, stop: cancel, done: make(chan struct{})}
		go func() { defer close(p.done); c.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-p.done })
		*pc = p
		return c
	}
}

// boundPod reserves for pod name on node, writes the pod to the API server
// bound there at clk's now as the reservation's attempt (what the plugin's
// Binding does), launches it, and returns its task id.
func boundPod(t *testing.T, ctx context.Context, e *env, client *fake.Clientset, clk *testingclock.FakeClock, node, name string, uid types.UID) string {
	t.Helper()
	r := reserveNode(t, ctx, e, node, name, uid)
	task := taskinfo.TaskID(uid, r.GetId())
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uid, Annotations: map[string]string{taskinfo.TaskIDAnnotation: task}},
		Spec:       v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: node, Containers: []v1.Container{{Name: "c", Image: "webapp"}}},
		Status: v1.PodStatus{Phase: v1.PodPending, Conditions: []v1.PodCondition{
			{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(clk.Now())}}},
	}
	if _, err := client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(&v1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, ObjectMeta: p.ObjectMeta, Spec: p.Spec})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: b, PodContentType: "application/json"}); err != nil {
		t.Fatalf("launching %s: %v", name, err)
	}
	return task
}

// masterTaskState is the state the master holds for task, live or
// completed ("" if none).
func masterTaskState(t *testing.T, e *env, task string) string {
	t.Helper()
	for _, fw := range e.sim.Leader().State()["frameworks"].([]map[string]any) {
		for _, key := range []string{"tasks", "completed_tasks"} {
			b, _ := json.Marshal(fw[key])
			var ts []map[string]any
			_ = json.Unmarshal(b, &ts)
			for _, tk := range ts {
				if tk["id"] == task {
					s, _ := tk["state"].(string)
					return s
				}
			}
		}
	}
	return ""
}

func getPod(t *testing.T, ctx context.Context, client *fake.Clientset, name string) *v1.Pod {
	t.Helper()
	p, err := client.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// failedTicking reports whether pod name failed, after moving the clock on
// by a check interval (a quarter of the 5-minute timeout, at most 30 s):
// the broker's periodic check may not have been waiting on the fake clock
// when the test moved it past the deadline.
func failedTicking(t *testing.T, ctx context.Context, client *fake.Clientset, clk *testingclock.FakeClock, name string) bool {
	t.Helper()
	if getPod(t, ctx, client, name).Status.Phase == v1.PodFailed {
		return true
	}
	clk.Step(30 * time.Second)
	return false
}

func counter(t *testing.T, get func() (float64, error)) float64 {
	t.Helper()
	v, err := get()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func launchTimeouts(t *testing.T) float64 {
	return counter(t, func() (float64, error) { return testutil.GetCounterMetricValue(metrics.TaskLaunchTimeouts) })
}

// TestTaskStuckStagingIsKilledAfterLaunchTimeout: a pod whose task the agent
// keeps TASK_STAGING (its executor never subscribes) past the launch
// timeout has its task killed through Mesos and, once Mesos reports it
// TASK_KILLED, fails with reason MesosTaskLaunchTimeout, so its controller
// replaces it; an event on the pod says why. A pod whose task runs, bound
// as long, is left alone. The clock is a fake one: the timeout passes when
// the test says so.
func TestTaskStuckStagingIsKilledAfterLaunchTimeout(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := fake.NewSimpleClientset()
	clk := testingclock.NewFakeClock(time.Now())
	var pc *podController
	e := startBroker(t, ctx, stagingSim(t), brokerOpts{builder: sleepingExecutor{}, sink: withPodController(t, client, 5*time.Minute, clk, &pc)})
	before := launchTimeouts(t)

	running := boundPod(t, ctx, e, client, clk, "node-a", "web-run", "uid-run")
	e.status.wait(t, ctx, running, mesos.TASK_RUNNING)
	stuck := boundPod(t, ctx, e, client, clk, "node-b", "web-stuck", "uid-stuck")
	waitFor(t, ctx, "the master to hold the task of web-stuck TASK_STAGING", func() bool { return masterTaskState(t, e, stuck) == "TASK_STAGING" })

	clk.Step(5*time.Minute + time.Second)
	waitFor(t, ctx, "web-stuck to fail", func() bool { return failedTicking(t, ctx, client, clk, "web-stuck") })
	p := getPod(t, ctx, client, "web-stuck")
	if p.Status.Reason != pods.ReasonTaskLaunchTimeout {
		t.Errorf("web-stuck failed with reason %q (%s), want %s", p.Status.Reason, p.Status.Message, pods.ReasonTaskLaunchTimeout)
	}
	t.Logf("web-stuck: %s: %s", p.Status.Reason, p.Status.Message)
	// Failed only after Mesos said the task ended: no live task beside
	// the replacement its controller starts.
	e.status.wait(t, ctx, stuck, mesos.TASK_KILLED)
	if s := masterTaskState(t, e, stuck); s != "TASK_KILLED" {
		t.Errorf("the master holds the task of web-stuck %s, want TASK_KILLED", s)
	}
	waitFor(t, ctx, "a MesosTaskLaunchTimeout event on web-stuck", func() bool {
		evs, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == "web-stuck" && ev.Reason == pods.ReasonTaskLaunchTimeout && ev.Type == v1.EventTypeWarning {
				return true
			}
		}
		return false
	})

	// The running pod was judged in the same pass as the stuck one (its
	// deadline passed too) before the stuck one's task was killed.
	if n := launchTimeouts(t) - before; n != 1 {
		t.Errorf("%v tasks killed for the launch timeout, want 1 (web-stuck's)", n)
	}
	if s := masterTaskState(t, e, running); s != "TASK_RUNNING" {
		t.Errorf("the task of web-run, running, is %s after the timeout", s)
	}
	if p := getPod(t, ctx, client, "web-run"); p.Status.Phase == v1.PodFailed {
		t.Errorf("web-run, whose task runs, failed: %s: %s", p.Status.Reason, p.Status.Message)
	}
}

// TestLaunchDeadlineSurvivesFailover: the deadline counts from the pod's
// binding, not from when a broker took over: a task stuck staging through a
// failover 4 minutes after its binding is killed 1 minute later by the new
// broker, which never launched it, and its pod fails with the reason.
func TestLaunchDeadlineSurvivesFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := fake.NewSimpleClientset()
	clk := testingclock.NewFakeClock(time.Now())
	sim := stagingSim(t)
	store := &brokermesos.MemoryIDStore{}
	var pc1, pc2 *podController
	b1 := startBroker(t, ctx, sim, brokerOpts{store: store, builder: sleepingExecutor{}, sink: withPodController(t, client, 5*time.Minute, clk, &pc1)})
	stuck := boundPod(t, ctx, b1, client, clk, "node-b", "web-stuck", "uid-stuck")
	waitFor(t, ctx, "the master to hold the task of web-stuck TASK_STAGING", func() bool { return masterTaskState(t, b1, stuck) == "TASK_STAGING" })
	clk.Step(4 * time.Minute)
	b1.stop()
	pc1.stop()
	<-pc1.done

	b2 := startBroker(t, ctx, sim, brokerOpts{store: store, builder: sleepingExecutor{}, sink: withPodController(t, client, 5*time.Minute, clk, &pc2)})
	// The new broker heard of the task from its reconciliation.
	b2.status.wait(t, ctx, stuck, mesos.TASK_STAGING)
	if p := getPod(t, ctx, client, "web-stuck"); p.Status.Phase == v1.PodFailed {
		t.Fatalf("web-stuck failed before its deadline: %s", p.Status.Message)
	}
	clk.Step(time.Minute + time.Second)
	waitFor(t, ctx, "web-stuck to fail", func() bool { return failedTicking(t, ctx, client, clk, "web-stuck") })
	if p := getPod(t, ctx, client, "web-stuck"); p.Status.Reason != pods.ReasonTaskLaunchTimeout {
		t.Errorf("web-stuck failed with reason %q (%s), want %s", p.Status.Reason, p.Status.Message, pods.ReasonTaskLaunchTimeout)
	}
	if s := masterTaskState(t, b2, stuck); s != "TASK_KILLED" {
		t.Errorf("the master holds the task of web-stuck %s, want TASK_KILLED", s)
	}
}

// TestLaunchTimeoutZeroDisables: with the timeout 0, a task reported
// TASK_STAGING an hour after its pod was bound is left staging, its pod
// bound (as before the timeout existed).
func TestLaunchTimeoutZeroDisables(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	client := fake.NewSimpleClientset()
	clk := testingclock.NewFakeClock(time.Now())
	var pc *podController
	e := startBroker(t, ctx, stagingSim(t), brokerOpts{builder: sleepingExecutor{}, sink: withPodController(t, client, 0, clk, &pc)})
	before := launchTimeouts(t)
	stuck := boundPod(t, ctx, e, client, clk, "node-b", "web-stuck", "uid-stuck")
	waitFor(t, ctx, "the master to hold the task of web-stuck TASK_STAGING", func() bool { return masterTaskState(t, e, stuck) == "TASK_STAGING" })
	clk.Step(time.Hour)
	// The answer goes through the pod controller before the recorder:
	// once recorded, the controller has judged it.
	if err := e.driver.ReconcileTasks(ctx, map[string]string{stuck: ""}); err != nil {
		t.Fatal(err)
	}
	e.status.wait(t, ctx, stuck, mesos.TASK_STAGING)
	if n := launchTimeouts(t) - before; n != 0 {
		t.Errorf("%v tasks killed for the launch timeout with the timeout disabled", n)
	}
	if s := masterTaskState(t, e, stuck); s != "TASK_STAGING" {
		t.Errorf("the task of web-stuck is %s, want TASK_STAGING (nothing killed it)", s)
	}
	if p := getPod(t, ctx, client, "web-stuck"); p.Status.Phase == v1.PodFailed {
		t.Errorf("web-stuck failed with the timeout disabled: %s: %s", p.Status.Reason, p.Status.Message)
	}
}
