package mesossim_test

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
)

// TestStateUsedCountsExecutors: like the real master, /master/state counts
// a running executor's resources as used, on its agent and its framework,
// next to its tasks'.
func TestStateUsedCountsExecutors(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), "application/json", fwInfo("used"))
	o := nextOffer(t, ctx, sched)
	exec := mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "e1"}, Command: &mesos.CommandInfo{}, Resources: resources(t, "cpus:0.25;mem:128")}
	if err := sched.MustAccept(ctx, launchCall(o, executorTask("t1", exec, resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	if _, err := sched.Update(ctx, "t1", mesos.TASK_RUNNING); err != nil {
		t.Fatal(err)
	}
	st := getState(t, ctx, s.MasterURL()+"/master/state")
	slave := st["slaves"].([]any)[0].(map[string]any)["used_resources"].(map[string]any)
	fw := st["frameworks"].([]any)[0].(map[string]any)["used_resources"].(map[string]any)
	for what, used := range map[string]map[string]any{"agent": slave, "framework": fw} {
		if used["cpus"] != 1.25 || used["mem"] != 192.0 {
			t.Errorf("%s used_resources = %v, want cpus 1.25 (task 1 + executor 0.25) and mem 192 (64 + 128)", what, used)
		}
	}
	// An unreachable agent's tasks are lost and its executors forgotten:
	// the framework uses nothing (the agent itself is no longer listed).
	if err := s.MarkAgentUnreachable(0); err != nil {
		t.Fatal(err)
	}
	st = getState(t, ctx, s.MasterURL()+"/master/state")
	fw = st["frameworks"].([]any)[0].(map[string]any)["used_resources"].(map[string]any)
	if fw["cpus"] != 0.0 || fw["mem"] != 0.0 || len(st["slaves"].([]any)) != 0 {
		t.Errorf("after the agent became unreachable: framework used_resources = %v, agents listed %v; want nothing and none", fw, st["slaves"])
	}
}
