package mesosoffers

import (
	"errors"
	"fmt"
	"sync"
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

func snapshotEvent(epoch string, agents ...*brokerv1.WatchOffersResponse) *brokerv1.WatchOffersResponse {
	snap := &brokerv1.Snapshot{Epoch: epoch}
	for _, a := range agents {
		snap.Agents = append(snap.Agents, a.GetUpdated())
	}
	return &brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Snapshot{Snapshot: snap}}
}

func cpusOf(t *testing.T, m *mirror) podresources.Milli {
	t.Helper()
	a := m.get("node-1")
	if a == nil {
		t.Fatal("node-1 is not in the view")
	}
	return a.available["*"].CPUs
}

// TestClaimUntilTheWatchCatchesUp: a local claim is taken off the view at
// once, stays taken while the broker has not answered and until the watch
// delivers the agent's view of the version the broker answered with, even
// when the agent changed for another reason meanwhile; a view that holds the
// claim is not charged twice.
func TestClaimUntilTheWatchCatchesUp(t *testing.T) {
	m := newMirror(nil)
	m.apply(snapshotEvent("e1", agentEvent(5, 4)))
	one := podresources.Demand{Scalars: podresources.Scalars{CPUs: 1000}}
	c, epoch, short, err := m.claim("node-1", "pod-1", one)
	if err != nil || !short.Fits() || epoch != "e1" {
		t.Fatalf("claim: %v %v epoch %q", err, short, epoch)
	}
	if got := cpusOf(t, m); got != 3000 {
		t.Errorf("after a local claim of 1 cpu the view offers %s cpus, want 3", got)
	}
	m.apply(agentEvent(6, 5)) // another offer arrived, the broker has not reserved yet
	if got := cpusOf(t, m); got != 4000 {
		t.Errorf("unanswered claim on a view of version 6 with 5 cpus: %s cpus, want 4", got)
	}
	m.answered(c, 7)
	if got := cpusOf(t, m); got != 4000 {
		t.Errorf("claim granted at version 7, view of version 6: %s cpus, want 4", got)
	}
	m.apply(agentEvent(7, 4)) // the broker's view with the claim
	if got, n := cpusOf(t, m), m.claimCount(); got != 4000 || n != 0 {
		t.Errorf("the view of version 7 holds the claim: %s cpus and %d local claims, want 4 and 0", got, n)
	}
}

// TestRefusedOrResetClaimsLeaveTheView: a claim the broker refused (or
// Unreserve dropped) gives its resources back at once, and a watch that ends
// drops every claim and says so.
func TestRefusedOrResetClaimsLeaveTheView(t *testing.T) {
	var resets []error
	m := newMirror(func(err error) { resets = append(resets, err) })
	m.apply(snapshotEvent("e1", agentEvent(5, 4)))
	two := podresources.Demand{Scalars: podresources.Scalars{CPUs: 2000}}
	a, _, _, _ := m.claim("node-1", "pod-a", two)
	if _, _, _, err := m.claim("node-1", "pod-b", two); err != nil {
		t.Fatal(err)
	}
	if _, _, short, _ := m.claim("node-1", "pod-c", two); short.Fits() {
		t.Fatal("a third claim of 2 cpus fit 4 cpus")
	}
	m.drop(a)
	if got := cpusOf(t, m); got != 2000 {
		t.Errorf("after dropping one of two claims: %s cpus, want 2", got)
	}
	// The same epoch resynced keeps the claims; another epoch drops them.
	m.apply(snapshotEvent("e1", agentEvent(8, 4)))
	if got := cpusOf(t, m); got != 2000 || len(resets) != 0 {
		t.Errorf("resync of the same epoch: %s cpus, %d resets; want 2 and none", got, len(resets))
	}
	m.apply(snapshotEvent("e2", agentEvent(1, 4)))
	if got := cpusOf(t, m); got != 4000 || len(resets) != 1 {
		t.Errorf("snapshot of a new epoch: %s cpus, %d resets; want 4 and one", got, len(resets))
	}
	if _, _, _, err := m.claim("node-1", "pod-d", two); err != nil {
		t.Fatal(err)
	}
	m.disconnected(errors.New("stream broke"))
	if n := m.claimCount(); n != 0 || len(resets) != 2 {
		t.Errorf("after a disconnect: %d claims, %d resets; want 0 and 2", n, len(resets))
	}
}

// TestGetFollowsHostsJoiningAndLeaving: agents that first appear after the
// snapshot are found by get (Filter's lock-free read) as they join, with
// their latest view, while readers run (go test -race); one taken out reads
// nil, and comes back when offered again.
func TestGetFollowsHostsJoiningAndLeaving(t *testing.T) {
	m := newMirror(nil)
	m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Snapshot{Snapshot: &brokerv1.Snapshot{Epoch: "e1"}}})
	const hosts = 300
	name := func(i int) string { return fmt.Sprintf("agent-%03d", i) }
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if a := m.get(name(i % hosts)); a != nil && a.hostname != name(i%hosts) {
					t.Errorf("get(%s) returned %s", name(i%hosts), a.hostname)
				}
			}
		}()
	}
	for v := uint64(1); v <= 2; v++ {
		for i := range hosts {
			m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: benchAgentProto(name(i), v)}})
		}
	}
	close(stop)
	wg.Wait()
	for i := range hosts {
		if a := m.get(name(i)); a == nil || a.version != 2 {
			t.Fatalf("get(%s) = %+v, want the agent at version 2", name(i), a)
		}
	}
	gone := benchAgentProto(name(7), 3)
	m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Removed{Removed: &brokerv1.AgentRemoved{AgentId: gone.AgentId, Hostname: gone.Hostname}}})
	if a := m.get(name(7)); a != nil {
		t.Fatalf("get(%s) after its offers went = version %d, want nil", name(7), a.version)
	}
	m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: gone}})
	if a := m.get(name(7)); a == nil || a.version != 3 {
		t.Fatalf("get(%s) after it was offered again = %+v, want version 3", name(7), a)
	}
}
