package mesossim_test

import (
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// TestUnreachableAgentIsCountedNotListed: Mesos 1.11's master moves an
// unreachable agent out of its registered agents (Master::markUnreachable),
// so the state endpoints (readonly_handler.cpp) list only the reachable ones
// in "slaves" and count the rest in "unreachable_slaves".
func TestUnreachableAgentIsCountedNotListed(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:1;mem:128"), hollowAgent(t, "cpus:1;mem:128")}})
	ctx := testCtx(t)
	lost, kept := s.Agent(0).ID(), s.Agent(1).ID()
	if err := s.MarkAgentUnreachable(0); err != nil {
		t.Fatal(err)
	}
	ids := func(v any) []string {
		var out []string
		for _, a := range v.([]any) {
			out = append(out, a.(map[string]any)["id"].(string))
		}
		return out
	}
	st := getState(t, ctx, s.MasterURL()+"/master/state")
	if got := ids(st["slaves"]); len(got) != 1 || got[0] != kept {
		t.Errorf("/master/state slaves %v, want only the reachable %s (not %s)", got, kept, lost)
	}
	if st["unreachable_slaves"] != 1.0 || st["activated_slaves"] != 1.0 || st["deactivated_slaves"] != 0.0 {
		t.Errorf("counts: unreachable %v activated %v deactivated %v, want 1 1 0", st["unreachable_slaves"], st["activated_slaves"], st["deactivated_slaves"])
	}
	for _, path := range []string{"/master/slaves", "/master/state-summary"} {
		if got := ids(getState(t, ctx, s.MasterURL()+path)["slaves"]); len(got) != 1 || got[0] != kept {
			t.Errorf("%s slaves %v, want only %s", path, got, kept)
		}
	}
}

// TestUnreachableKeepsATerminalLatestState: a task whose end the agent
// reported (latest state TASK_KILLED) while the framework has not
// acknowledged it yet is not made live again when its agent becomes
// unreachable. Mesos 1.11's Master::updateTask never overwrites a terminal
// latest state; the framework still gets the TASK_UNREACHABLE update, and
// the state endpoint shows the task's latest state, TASK_KILLED.
func TestUnreachableKeepsATerminalLatestState(t *testing.T) {
	mc := fastMaster()
	mc.AgentPingTimeout = 5 * time.Second
	s := startSim(t, mesossim.Config{Master: mc, Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	info := fwInfo("ended", mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	checkpoint := true
	info.Checkpoint = &checkpoint
	sched := subscribe(t, ctx, s.MasterURL(), wire.JSON, info)
	o := nextOffer(t, ctx, sched)
	if err := sched.MustAccept(ctx, launchCall(o, executorTask("t", testExecutor("ends"), resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	running, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
	if err != nil {
		t.Fatal(err)
	}
	ack(t, ctx, sched, running)
	killTask(t, ctx, sched, "t") // not acknowledged: the update stays pending
	if err := s.MarkAgentUnreachable(0); err != nil {
		t.Fatal(err)
	}
	if _, err := sched.Update(ctx, "t", mesos.TASK_UNREACHABLE); err != nil {
		t.Fatal(err)
	}
	state := ""
	st := getState(t, ctx, s.MasterURL()+"/master/state")
	for _, fw := range st["frameworks"].([]any) {
		for _, list := range []string{"tasks", "unreachable_tasks", "completed_tasks"} {
			ts, _ := fw.(map[string]any)[list].([]any)
			for _, task := range ts {
				if task.(map[string]any)["id"] == "t" {
					state, _ = task.(map[string]any)["state"].(string)
				}
			}
		}
	}
	if state != "TASK_KILLED" {
		t.Errorf("/master/state lists task t as %q after its agent became unreachable, want its latest state TASK_KILLED", state)
	}
}
