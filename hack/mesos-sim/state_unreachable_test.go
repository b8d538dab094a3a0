package mesossim_test

import (
	"testing"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
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
