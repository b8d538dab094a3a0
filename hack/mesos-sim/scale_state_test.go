package mesossim_test

import (
	"fmt"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// TestHollowScale: many hollow agents in one process; every one is offered
// and answers launches with TASK_RUNNING.
func TestHollowScale(t *testing.T) {
	const n = 200
	var agents []agent.Config
	for i := 0; i < n; i++ {
		agents = append(agents, hollowAgent(t, "cpus:2;mem:1024"))
	}
	s := startSim(t, mesossim.Config{Agents: agents})
	ctx := scaleCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), wire.Protobuf, fwInfo("scale"))
	seen := map[string]bool{}
	launched := 0
	for len(seen) < n {
		ev, err := sched.Next(ctx, scheduler.Event_OFFERS)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range ev.Offers.Offers {
			if seen[o.AgentID.Value] {
				t.Fatalf("agent %s offered twice while its offer is outstanding", o.AgentID.Value)
			}
			seen[o.AgentID.Value] = true
			id := fmt.Sprintf("t%d", launched)
			launched++
			if err := sched.MustAccept(ctx, launchCall(o, commandTask(id, "x", resources(t, "cpus:1;mem:128")))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < launched; i++ {
		st, err := sched.Update(ctx, fmt.Sprintf("t%d", i), mesos.TASK_RUNNING)
		if err != nil {
			t.Fatal(err)
		}
		if err := sched.Ack(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	st := getState(t, ctx, s.MasterURL()+"/master/state")
	if got := len(st["slaves"].([]any)); got != n {
		t.Errorf("state has %d agents", got)
	}
}

// TestStateEndpoints: frameworks, offers, tasks and executors are visible
// on /master/state and the agent's /state.
func TestStateEndpoints(t *testing.T) {
	ac := hollowAgent(t, "cpus:2;mem:1024;ports:[31000-31009]")
	attrs, err := mesossim.ParseAttributes("rack:r1;level:3")
	if err != nil {
		t.Fatal(err)
	}
	ac.Attributes = attrs
	s := startSim(t, mesossim.Config{Agents: []agent.Config{ac}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), wire.JSON, fwInfo("state"))
	o := nextOffer(t, ctx, sched)
	st := getState(t, ctx, s.MasterURL()+"/master/state")
	fw := st["frameworks"].([]any)[0].(map[string]any)
	if fw["id"] != sched.FrameworkID || len(fw["offers"].([]any)) != 1 || fw["active"] != true {
		t.Fatalf("framework state %v", fw)
	}
	agentState := st["slaves"].([]any)[0].(map[string]any)
	if agentState["attributes"].(map[string]any)["rack"] != "r1" || agentState["resources"].(map[string]any)["ports"] != "[31000-31009]" {
		t.Errorf("agent in master state %v", agentState)
	}
	exec := mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "e"}, Command: &mesos.CommandInfo{}}
	task := executorTask("t", exec, resources(t, "cpus:1;mem:128;ports:[31000-31001]"))
	if err := sched.MustAccept(ctx, launchCall(o, task)); err != nil {
		t.Fatal(err)
	}
	up, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
	if err != nil {
		t.Fatal(err)
	}
	if err := sched.Ack(ctx, up); err != nil {
		t.Fatal(err)
	}
	// The ports left over are offered again, minus what the task holds.
	o2 := nextOffer(t, ctx, sched)
	for _, r := range o2.Resources {
		if r.Name == "ports" && (len(r.Ranges.Range) != 1 || r.Ranges.Range[0].Begin != 31002 || r.Ranges.Range[0].End != 31009) {
			t.Errorf("ports re-offered %v", r.Ranges)
		}
	}
	eventually(t, ctx, "task RUNNING in master state", func() bool {
		st := getState(t, ctx, s.MasterURL()+"/master/state")
		tasks := st["frameworks"].([]any)[0].(map[string]any)["tasks"].([]any)
		return len(tasks) == 1 && tasks[0].(map[string]any)["state"] == "TASK_RUNNING"
	})
	if tasks := getState(t, ctx, s.MasterURL()+"/master/tasks")["tasks"].([]any); len(tasks) != 1 {
		t.Errorf("/master/tasks %v", tasks)
	}
	if sl := getState(t, ctx, s.MasterURL()+"/master/slaves")["slaves"].([]any); len(sl) != 1 {
		t.Errorf("/master/slaves %v", sl)
	}
	if fws := getState(t, ctx, s.MasterURL()+"/master/frameworks")["frameworks"].([]any); len(fws) != 1 {
		t.Errorf("/master/frameworks %v", fws)
	}
	ast := getState(t, ctx, "http://"+s.Agent(0).Endpoint()+"/state")
	execs := ast["frameworks"].([]any)[0].(map[string]any)["executors"].([]any)
	if len(execs) != 1 || execs[0].(map[string]any)["id"] != "e" {
		t.Errorf("agent state executors %v", execs)
	}
	if ast["id"] != s.Agent(0).ID() || ast["flags"].(map[string]any)["hollow"] != true {
		t.Errorf("agent state %v", ast)
	}
}
