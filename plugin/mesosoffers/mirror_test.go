package mesosoffers

import (
	"testing"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

func agentEvent(version uint64, cpus float64) *brokerv1.WatchOffersResponse {
	avail := podresources.ByRole{"*": {Scalars: podresources.Scalars{CPUs: podresources.MilliFromFloat(cpus)}}}
	return &brokerv1.WatchOffersResponse{ResourceVersion: version, Event: &brokerv1.WatchOffersResponse_Updated{Updated: &brokerv1.Agent{
		AgentId: "a1", Hostname: "node-1", ResourceVersion: version, Available: []*brokerv1.RoleResources{{Role: "*", Resources: brokerapi.ResourcesToProto(avail["*"])}},
		Capacity: []*brokerv1.RoleResources{{Role: "*", Resources: brokerapi.ResourcesToProto(avail["*"])}},
	}}}
}

// TestAssumeUntilTheWatchCatchesUp: a granted claim is taken off the local
// copy until the watch delivers the agent's view of the claim's version,
// even when the agent changed for another reason while Reserve was in
// flight; a view that already holds the claim is not charged twice.
func TestAssumeUntilTheWatchCatchesUp(t *testing.T) {
	m := newMirror()
	m.apply(agentEvent(5, 4))
	seen := m.get("node-1").version
	m.apply(agentEvent(6, 5)) // another offer arrived meanwhile
	one := podresources.Resources{Scalars: podresources.Scalars{CPUs: 1000}}
	m.assume("node-1", seen, 7, "*", one)
	if got := m.get("node-1").available["*"].CPUs; got != 4000 {
		t.Errorf("after a claim of 1 cpu granted at version 7, the copy of version 6 offers %s cpus, want 4", got)
	}
	m.apply(agentEvent(7, 4)) // the broker's view with the claim
	m.assume("node-1", seen, 7, "*", one)
	if got := m.get("node-1").available["*"].CPUs; got != 4000 {
		t.Errorf("the view of version 7 already holds the claim; the copy offers %s cpus, want 4", got)
	}
}
