package mesossim_test

import (
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// TestHealedAgentForgetsTasksItNeverHad: a task launched into a partition
// (the master took it, the agent never got it) is TASK_UNREACHABLE once the
// master gives up on the agent. When the agent re-registers without it, the
// master drops its unreachable record (Mesos 1.11 Master::__reregisterSlave),
// so explicit reconciliation answers TASK_GONE — the task is unknown and its
// agent registered — instead of TASK_UNREACHABLE for good. A task the agent
// does report is announced again with REASON_AGENT_REREGISTERED.
func TestHealedAgentForgetsTasksItNeverHad(t *testing.T) {
	cfg := fastMaster()
	// The master notices the partition only when told to, so the launch
	// below reaches it while the agent is cut off.
	cfg.AgentPingTimeout = time.Hour
	s := startSim(t, mesossim.Config{Master: cfg, Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), wire.JSON, fwInfo("heal", mesos.FrameworkInfo_Capability_PARTITION_AWARE))
	o := nextOffer(t, ctx, sched)
	launch := launchCall(o, commandTask("kept", "sleep 100", resources(t, "cpus:1;mem:64")))
	// The rest of the offer comes back at once for the second launch.
	noRefusal := 0.0
	launch.Accept.Filters = &mesos.Filters{RefuseSeconds: &noRefusal}
	if err := sched.MustAccept(ctx, launch); err != nil {
		t.Fatal(err)
	}
	st, err := sched.Update(ctx, "kept", mesos.TASK_RUNNING)
	if err != nil {
		t.Fatal(err)
	}
	if err := sched.Ack(ctx, st); err != nil {
		t.Fatal(err)
	}
	o = nextOffer(t, ctx, sched)
	if err := s.PartitionAgent(0, true); err != nil {
		t.Fatal(err)
	}
	if err := sched.MustAccept(ctx, launchCall(o, commandTask("never", "sleep 100", resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkAgentUnreachable(0); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"kept", "never"} {
		if _, err := sched.Update(ctx, id, mesos.TASK_UNREACHABLE); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PartitionAgent(0, false); err != nil {
		t.Fatal(err)
	}
	back, err := sched.Wait(ctx, func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_UPDATE && e.Update.Status.TaskID.Value == "kept" &&
			e.Update.Status.GetReason() == mesos.REASON_AGENT_REREGISTERED
	})
	if err != nil {
		t.Fatalf("waiting for the re-registered agent's task to be announced: %v", err)
	}
	if st := back.Update.Status; st.GetState() != mesos.TASK_RUNNING || st.GetSource() != mesos.SOURCE_MASTER || len(st.UUID) != 0 {
		t.Errorf("update of a task the healed agent reports: %v, want TASK_RUNNING from the master without uuid", st)
	}
	if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_RECONCILE, Reconcile: &scheduler.Call_Reconcile{
		Tasks: []scheduler.Call_Reconcile_Task{{TaskID: mesos.TaskID{Value: "never"}, AgentID: &o.AgentID}}}}); err != nil {
		t.Fatal(err)
	}
	ev, err := sched.Wait(ctx, func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_UPDATE && e.Update.Status.TaskID.Value == "never" &&
			e.Update.Status.GetReason() == mesos.REASON_RECONCILIATION
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := ev.Update.Status.GetState(); got != mesos.TASK_GONE {
		t.Errorf("explicit reconciliation of a task the healed agent never had: %v, want TASK_GONE", got)
	}
}
