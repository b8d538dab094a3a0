package framework_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/apimachinery/pkg/types"

	"k8s.io/component-base/metrics/testutil"

	"github.com/k8sm/k8sm/broker/metrics"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// TestPartitionedTaskComesBack: a task on an agent cut off from the master
// is TASK_UNREACHABLE (not LOST, which would fail its pod while it may still
// run); when the partition heals, the broker learns that the same task runs
// on (TASK_RUNNING), and the master never held a second task for the pod.
func TestPartitionedTaskComesBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	acks := func() float64 {
		v, err := testutil.GetCounterMetricValue(metrics.Acks.WithLabelValues("success"))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	acked := acks()
	e := newEnv(t, ctx)
	r := reserve(t, ctx, e, "web-1", "uid-1", 0)
	if _, err := e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podBytes(t, "web-1", types.UID("uid-1"), false), PodContentType: "application/json"}); err != nil {
		t.Fatal(err)
	}
	id := e.status.task(t, ctx, "uid-1")
	e.status.wait(t, ctx, id, mesos.TASK_RUNNING)
	// Every update acknowledged: the agent has nothing to send again when
	// it comes back, so only reconciliation can tell the broker the task
	// runs on.
	for {
		e.status.mu.Lock()
		n := len(e.status.m[id])
		e.status.mu.Unlock()
		if acks()-acked >= float64(n) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("updates of %s never acknowledged (%v of %d)", id, acks()-acked, n)
		case <-time.After(10 * time.Millisecond):
		}
	}

	if err := e.sim.PartitionAgent(0, true); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.MarkAgentUnreachable(0); err != nil {
		t.Fatal(err)
	}
	e.status.wait(t, ctx, id, mesos.TASK_UNREACHABLE)
	if err := e.sim.PartitionAgent(0, false); err != nil {
		t.Fatal(err)
	}
	e.status.waitAfter(t, ctx, id, mesos.TASK_UNREACHABLE, mesos.TASK_RUNNING)

	e.status.mu.Lock()
	seen := slices.Clone(e.status.m[id])
	e.status.mu.Unlock()
	for _, st := range seen {
		switch st {
		case mesos.TASK_LOST, mesos.TASK_GONE, mesos.TASK_DROPPED, mesos.TASK_KILLED, mesos.TASK_FAILED:
			t.Errorf("the partitioned task was reported %s (states %v)", st, seen)
		}
	}
	tasks := masterTasks(t, e)
	if len(tasks) != 1 || tasks[0]["id"] != id || tasks[0]["state"] != "TASK_RUNNING" {
		t.Errorf("master holds %v, want the one task %s RUNNING", tasks, id)
	}
}

// TestTaskLaunchedIntoPartitionSettled: a pod launched just as its agent was
// cut off (the master took the task, the agent never got it) is
// TASK_UNREACHABLE; when the agent comes back without it, the broker learns
// at once that the task is gone (TASK_GONE, so the pod ends and its
// controller replaces it) rather than at the next periodic reconciliation,
// 5 minutes on — even though the broker, with no pod pending, suppresses
// offers, so the agent offers nothing: the master's announcement of the
// agent's other task says it is back.
func TestTaskLaunchedIntoPartitionSettled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The master notices the partition only when told to, so the second
	// launch reaches it.
	sim := startSimWith(t, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]", master.Config{HeartbeatInterval: 200 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: time.Hour})
	e := startBroker(t, ctx, sim, brokerOpts{})
	if st := launchOne(t, ctx, e, "web-1", "uid-1"); st != mesos.TASK_RUNNING {
		t.Fatalf("task of web-1 %s, want TASK_RUNNING", st)
	}
	kept := e.status.task(t, ctx, "uid-1")
	never := launchIntoPartition(t, ctx, e)
	e.status.wait(t, ctx, kept, mesos.TASK_UNREACHABLE)
	if err := e.sim.PartitionAgent(0, false); err != nil {
		t.Fatal(err)
	}
	e.status.waitAfter(t, ctx, kept, mesos.TASK_UNREACHABLE, mesos.TASK_RUNNING)
	e.status.waitAfter(t, ctx, never, mesos.TASK_UNREACHABLE, mesos.TASK_GONE)
	e.status.mu.Lock()
	seen := slices.Clone(e.status.m[kept])
	e.status.mu.Unlock()
	for _, st := range seen {
		if taskinfo.Terminal(st) {
			t.Errorf("the task the agent kept was reported %s (states %v)", st, seen)
		}
	}
}

// TestLaunchIntoPartitionSettledOnAnIdleAgent: as above, but the healed
// agent runs no other k8sm task, so no status announces it, and the
// broker, suppressed, gets no offer from it: the launch it never received
// is found gone by the periodic reconciliation of unreachable tasks, not
// left to the 5-minute one with its pod Pending and task-less.
func TestLaunchIntoPartitionSettledOnAnIdleAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sim := startSimWith(t, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]", master.Config{HeartbeatInterval: 200 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: time.Hour})
	e := startBroker(t, ctx, sim, brokerOpts{unreachableEvery: 500 * time.Millisecond})
	never := launchIntoPartition(t, ctx, e)
	if err := e.sim.PartitionAgent(0, false); err != nil {
		t.Fatal(err)
	}
	e.status.waitAfter(t, ctx, never, mesos.TASK_UNREACHABLE, mesos.TASK_GONE)
}

// launchIntoPartition launches web-2 to agent 0 as it is cut off, until
// the master reports the task TASK_UNREACHABLE, and makes the broker
// suppress offers (no pod waits for resources): the returned task never
// reached the agent.
func launchIntoPartition(t *testing.T, ctx context.Context, e *env) string {
	t.Helper()
	r := reserve(t, ctx, e, "web-2", "uid-2", 0)
	if err := e.sim.PartitionAgent(0, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podBytes(t, "web-2", types.UID("uid-2"), false), PodContentType: "application/json"}); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.MarkAgentUnreachable(0); err != nil {
		t.Fatal(err)
	}
	never := e.status.task(t, ctx, "uid-2")
	e.status.wait(t, ctx, never, mesos.TASK_UNREACHABLE)
	e.driver.SetPending(false)
	waitFor(t, ctx, "the framework to suppress offers", func() bool {
		roles, _ := json.Marshal(frameworkState(t, e)["suppressed_roles"])
		return string(roles) == `["*"]`
	})
	return never
}

// TestAgentMarkedGone: an operator marks the agent of a running task gone
// (MARK_AGENT_GONE): the task ends TASK_GONE_BY_OPERATOR, which ends its
// pod (unlike TASK_UNREACHABLE), and the agent's offers are gone.
func TestAgentMarkedGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, sink, id := runningTask(t, ctx)
	if err := e.sim.MarkAgentGone(0); err != nil {
		t.Fatal(err)
	}
	e.status.wait(t, ctx, id, mesos.TASK_GONE_BY_OPERATOR)
	if !taskinfo.Terminal(mesos.TASK_GONE_BY_OPERATOR) {
		t.Error("TASK_GONE_BY_OPERATOR does not end the pod")
	}
	waitFor(t, ctx, "the agent's offers to be gone from the cache", func() bool {
		v, ok := e.cache.Agent(e.sim.Agent(0).ID())
		return !ok || v.Available.Total().IsZero()
	})
	// The node mirror hears that the agent is gone, so its Node goes.
	agentID := e.sim.Agent(0).ID()
	waitFor(t, ctx, "the agent to be reported gone", func() bool { return sink.has("gone " + agentID) })
}

// TestUnreachableAgentIsNotGone: an agent the master cannot reach may come
// back: its Node is kept (NotReady), never deleted.
func TestUnreachableAgentIsNotGone(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, sink, id := runningTask(t, ctx)
	agentID := e.sim.Agent(0).ID()
	if err := e.sim.PartitionAgent(0, true); err != nil {
		t.Fatal(err)
	}
	if err := e.sim.MarkAgentUnreachable(0); err != nil {
		t.Fatal(err)
	}
	e.status.wait(t, ctx, id, mesos.TASK_UNREACHABLE)
	waitFor(t, ctx, "the agent to be reported lost", func() bool { return sink.has("lost " + agentID) })
	if sink.has("gone " + agentID) {
		t.Errorf("an unreachable agent was reported gone: %v", sink.list())
	}
}

// runningTask starts a broker that reports agents to a recorder and runs
// one pod's task; it returns the task's id.
func runningTask(t *testing.T, ctx context.Context) (*env, *agentEvents, string) {
	t.Helper()
	sink := &agentEvents{}
	e := startBroker(t, ctx, startSim(t, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]", 50*time.Millisecond), brokerOpts{agents: sink})
	if st := launchOne(t, ctx, e, "web-1", "uid-1"); st != mesos.TASK_RUNNING {
		t.Fatalf("task %s, want TASK_RUNNING", st)
	}
	return e, sink, e.status.task(t, ctx, "uid-1")
}

// agentEvents records what a framework.AgentSink hears.
type agentEvents struct {
	mu sync.Mutex
	ev []string
}

func (a *agentEvents) add(s string) { a.mu.Lock(); a.ev = append(a.ev, s); a.mu.Unlock() }
func (a *agentEvents) has(s string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.ev, s)
}
func (a *agentEvents) list() []string { a.mu.Lock(); defer a.mu.Unlock(); return slices.Clone(a.ev) }

func (a *agentEvents) AgentOffered(_ context.Context, o *mesos.Offer) {}
func (a *agentEvents) AgentLost(_ context.Context, id string)         { a.add("lost " + id) }
func (a *agentEvents) AgentGone(_ context.Context, id string)         { a.add("gone " + id) }
func (a *agentEvents) ExecutorEnded(_ context.Context, id string)     { a.add("executor-ended " + id) }
