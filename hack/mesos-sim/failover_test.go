package mesossim_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	operator "github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// TestFrameworkFailover: a second SUBSCRIBE with the framework id fails the
// first connection over with an ERROR event; tasks survive; after the
// failover timeout a disconnected framework is torn down for good.
func TestFrameworkFailover(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			info := fwInfo("failover")
			ft := 1.0
			info.FailoverTimeout = &ft
			first := subscribe(t, ctx, s.MasterURL(), ct, info)
			o := nextOffer(t, ctx, first)
			if err := first.MustAccept(ctx, launchCall(o, commandTask("keep", "sleep 100", resources(t, "cpus:1;mem:64")))); err != nil {
				t.Fatal(err)
			}
			running, err := first.Update(ctx, "keep", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}

			info.ID = &mesos.FrameworkID{Value: first.FrameworkID}
			second := subscribe(t, ctx, s.MasterURL(), ct, info)
			if second.FrameworkID != first.FrameworkID {
				t.Fatalf("failover got framework id %s, want %s", second.FrameworkID, first.FrameworkID)
			}
			ev, err := first.Next(ctx, scheduler.Event_ERROR)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Error.Message != "Framework failed over" {
				t.Errorf("ERROR message %q", ev.Error.Message)
			}
			eventually(t, ctx, "old stream to close", first.Closed)
			// The old stream id is no longer valid.
			code, _, _ := first.Call(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE})
			if code != 400 {
				t.Errorf("call with the old stream id: %d, want 400", code)
			}
			// The unacknowledged update is resent to the new instance.
			again, err := second.Update(ctx, "keep", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			if string(again.UUID) != string(running.UUID) {
				t.Errorf("resent uuid differs")
			}
			if err := second.Ack(ctx, again); err != nil {
				t.Fatal(err)
			}

			// Disconnect: calls are refused with 403 until re-subscription,
			// and after failover_timeout the framework is removed.
			second.Close()
			eventually(t, ctx, "403 for the disconnected framework", func() bool {
				code, _, _ := second.Call(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE})
				return code == 403
			})
			eventually(t, ctx, "framework removal after failover_timeout", func() bool {
				st := getState(t, ctx, s.MasterURL()+"/master/state")
				return len(st["completed_frameworks"].([]any)) == 1
			})
			_, err = simtest.Subscribe(ctx, s.MasterURL(), ct, info)
			if err == nil || !strings.Contains(err.Error(), "Framework has been removed") {
				t.Fatalf("re-subscribing a removed framework: %v", err)
			}
			// Its task was killed on the agent.
			eventually(t, ctx, "agent to forget the task", func() bool {
				st := getState(t, ctx, "http://"+s.Agent(0).Endpoint()+"/state")
				return len(st["frameworks"].([]any)) == 0
			})
		})
	}
}

// TestTeardown removes the framework and closes its stream.
func TestTeardown(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	for _, ct := range encodings {
		ctx := testCtx(t)
		sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("teardown"))
		nextOffer(t, ctx, sched)
		if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN}); err != nil {
			t.Fatal(err)
		}
		eventually(t, ctx, "stream to close", sched.Closed)
		code, msg, _ := sched.Call(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE})
		if code != 400 || !strings.Contains(msg, "Framework cannot be found") {
			t.Errorf("call after teardown: %d %q", code, msg)
		}
	}
}

// TestOfferTimeout: --offer_timeout rescinds unused offers.
func TestOfferTimeout(t *testing.T) {
	mc := fastMaster()
	mc.OfferTimeout = 200 * time.Millisecond
	s := startSim(t, mesossim.Config{Master: mc, Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	for _, ct := range encodings {
		ctx := testCtx(t)
		sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("timeout"))
		o := nextOffer(t, ctx, sched)
		ev, err := sched.Next(ctx, scheduler.Event_RESCIND)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Rescind.OfferID != o.ID {
			t.Errorf("rescinded %v, want %v", ev.Rescind.OfferID, o.ID)
		}
		// Rescinded resources are offered again (no filter).
		nextOffer(t, ctx, sched)
		if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAgentLost: a partitioned agent fails its health checks; its tasks are
// reported TASK_LOST (TASK_UNREACHABLE to partition-aware frameworks) and a
// FAILURE event names the agent.
func TestAgentLost(t *testing.T) {
	for _, pa := range []bool{false, true} {
		for _, ct := range encodings {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			info := fwInfo("lost")
			want := mesos.TASK_LOST
			if pa {
				info = fwInfo("lost", mesos.FrameworkInfo_Capability_PARTITION_AWARE)
				want = mesos.TASK_UNREACHABLE
			}
			sched := subscribe(t, ctx, s.MasterURL(), ct, info)
			o := nextOffer(t, ctx, sched)
			if err := sched.MustAccept(ctx, launchCall(o, commandTask("t", "sleep 100", resources(t, "cpus:1;mem:64")))); err != nil {
				t.Fatal(err)
			}
			st, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			if err := sched.Ack(ctx, st); err != nil {
				t.Fatal(err)
			}
			if err := s.PartitionAgent(0, true); err != nil {
				t.Fatal(err)
			}
			lost, err := sched.Update(ctx, "t", want)
			if err != nil {
				t.Fatal(err)
			}
			if len(lost.UUID) != 0 || lost.GetSource() != mesos.SOURCE_MASTER {
				t.Errorf("lost update %v", lost)
			}
			ev, err := sched.Next(ctx, scheduler.Event_FAILURE)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Failure.AgentID.GetValue() != o.AgentID.Value || ev.Failure.ExecutorID != nil {
				t.Errorf("FAILURE %v", ev.Failure)
			}
			// The partition heals and the agent re-registers: a partition-aware
			// framework finds its task running again by reconciling; the task
			// of any other framework is killed.
			if err := s.PartitionAgent(0, false); err != nil {
				t.Fatal(err)
			}
			if pa {
				eventually(t, ctx, "task to be running again", func() bool {
					if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_RECONCILE, Reconcile: &scheduler.Call_Reconcile{}}); err != nil {
						t.Fatal(err)
					}
					for _, e := range sched.Events() {
						if e.Type == scheduler.Event_UPDATE && e.Update.Status.GetState() == mesos.TASK_RUNNING && e.Update.Status.GetReason() == mesos.REASON_RECONCILIATION {
							return true
						}
					}
					return false
				})
			} else {
				killed, err := sched.Update(ctx, "t", mesos.TASK_KILLED)
				if err != nil {
					t.Fatal(err)
				}
				if err := sched.Ack(ctx, killed); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// TestCallFaults: a dropped ACKNOWLEDGE means the update keeps coming.
func TestCallFaults(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("faults"))
			o := nextOffer(t, ctx, sched)
			if err := s.InjectCallFault(mesossim.CallFault{Type: scheduler.Call_ACKNOWLEDGE, Count: 1}); err != nil {
				t.Fatal(err)
			}
			if err := sched.MustAccept(ctx, launchCall(o, commandTask("t", "x", resources(t, "cpus:1;mem:64")))); err != nil {
				t.Fatal(err)
			}
			st, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			if err := sched.Ack(ctx, st); err != nil { // dropped
				t.Fatal(err)
			}
			again, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			if err := sched.Ack(ctx, again); err != nil {
				t.Fatal(err)
			}
			// A delayed KILL still happens.
			if err := s.InjectCallFault(mesossim.CallFault{Type: scheduler.Call_KILL, Delay: 100 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			killTask(t, ctx, sched, "t")
			s.ClearCallFaults()
		})
	}
}

// TestMasterFailoverSingle: a fresh master on the same address learns tasks
// from re-registering agents and the framework re-subscribes with its id.
func TestMasterFailoverSingle(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			info := fwInfo("mfail")
			ft := 60.0
			info.FailoverTimeout = &ft
			sched := subscribe(t, ctx, s.MasterURL(), ct, info)
			o := nextOffer(t, ctx, sched)
			if err := sched.MustAccept(ctx, launchCall(o, commandTask("t", "x", resources(t, "cpus:1;mem:64")))); err != nil {
				t.Fatal(err)
			}
			st, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			if err := sched.Ack(ctx, st); err != nil {
				t.Fatal(err)
			}
			url := s.MasterURL()
			if err := s.FailoverMaster(); err != nil {
				t.Fatal(err)
			}
			eventually(t, ctx, "old stream to end", sched.Closed)
			if s.MasterURL() != url {
				t.Fatalf("replacement master at %s, want %s", s.MasterURL(), url)
			}
			info.ID = &mesos.FrameworkID{Value: sched.FrameworkID}
			// A connection kept alive to the dead master may fail once, as it
			// would for a real scheduler: re-subscribe until it works.
			var again *simtest.Scheduler
			eventually(t, ctx, "re-subscription to the new master", func() bool {
				sub, err := simtest.Subscribe(ctx, url, ct, info)
				if err != nil {
					return false
				}
				again = sub
				return true
			})
			t.Cleanup(again.Close)
			if err := again.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_RECONCILE, Reconcile: &scheduler.Call_Reconcile{}}); err != nil {
				t.Fatal(err)
			}
			if _, err := again.Update(ctx, "t", mesos.TASK_RUNNING); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMarkAgentGone: the operator marks an agent gone (MARK_AGENT_GONE, as
// master's markAgentGone): its tasks end TASK_GONE_BY_OPERATOR
// (TASK_LOST to frameworks that are not partition-aware) — also those
// already unreachable —, a FAILURE names the agent, and the agent may not
// register again. An unknown agent is refused with 400.
func TestMarkAgentGone(t *testing.T) {
	for _, pa := range []bool{false, true} {
		for _, partitioned := range []bool{false, true} {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			info := fwInfo("gone")
			want := mesos.TASK_LOST
			if pa {
				info = fwInfo("gone", mesos.FrameworkInfo_Capability_PARTITION_AWARE)
				want = mesos.TASK_GONE_BY_OPERATOR
			}
			sched := subscribe(t, ctx, s.MasterURL(), wire.JSON, info)
			o := nextOffer(t, ctx, sched)
			if err := sched.MustAccept(ctx, launchCall(o, commandTask("t", "sleep 100", resources(t, "cpus:1;mem:64")))); err != nil {
				t.Fatal(err)
			}
			st, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			if err := sched.Ack(ctx, st); err != nil {
				t.Fatal(err)
			}
			if partitioned && pa {
				if err := s.PartitionAgent(0, true); err != nil {
					t.Fatal(err)
				}
				if _, err := sched.Update(ctx, "t", mesos.TASK_UNREACHABLE); err != nil {
					t.Fatal(err)
				}
			}
			code, _, msg := operatorCall(t, ctx, s.MasterURL(), wire.JSON, &operator.Call{Type: operator.Call_MARK_AGENT_GONE,
				MarkAgentGone: &operator.Call_MarkAgentGone{AgentID: o.AgentID}})
			if code != http.StatusOK {
				t.Fatalf("MARK_AGENT_GONE: %d %s", code, msg)
			}
			gone, err := sched.Update(ctx, "t", want)
			if err != nil {
				t.Fatal(err)
			}
			if gone.GetReason() != mesos.REASON_AGENT_REMOVED_BY_OPERATOR || gone.GetSource() != mesos.SOURCE_MASTER {
				t.Errorf("update of a task on an agent marked gone: %v", gone)
			}
			if !partitioned {
				ev, err := sched.Next(ctx, scheduler.Event_FAILURE)
				if err != nil {
					t.Fatal(err)
				}
				if ev.Failure.AgentID.GetValue() != o.AgentID.Value {
					t.Errorf("FAILURE %v", ev.Failure)
				}
			}
			// Healed or not, it may not come back.
			if partitioned && pa {
				if err := s.PartitionAgent(0, false); err == nil || !strings.Contains(err.Error(), "marked gone") {
					t.Errorf("an agent marked gone registering again: %v, want refused", err)
				}
			}
			for _, a := range s.Leader().State()["slaves"].([]map[string]any) {
				if a["id"] == o.AgentID.Value && a["active"] == true {
					t.Errorf("agent marked gone is active again: %v", a)
				}
			}
			code, _, _ = operatorCall(t, ctx, s.MasterURL(), wire.JSON, &operator.Call{Type: operator.Call_MARK_AGENT_GONE,
				MarkAgentGone: &operator.Call_MarkAgentGone{AgentID: mesos.AgentID{Value: "no-such-agent"}}})
			if code != http.StatusBadRequest {
				t.Errorf("MARK_AGENT_GONE of an unknown agent: %d, want 400", code)
			}
		}
	}
}
