package offers

import (
	"fmt"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/k8sm/k8sm/pkg/podresources"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newTestCache(cfg Config) (*Cache, *clocktesting.FakeClock) {
	clk := clocktesting.NewFakeClock(t0)
	cfg.Clock = clk
	return New(cfg), clk
}

// mkOffer builds an offer of unreserved resources allocated to role.
func mkOffer(id, agentID, host, role string, r podresources.Resources) mesos.Offer {
	return mesos.Offer{
		ID:        mesos.OfferID{Value: id},
		AgentID:   mesos.AgentID{Value: agentID},
		Hostname:  host,
		Resources: podresources.ToMesos(r, role),
	}
}

func res(cpus, memMB float64, ports ...podresources.Range) podresources.Resources {
	return podresources.Resources{
		Scalars: podresources.Scalars{CPUs: podresources.MilliFromFloat(cpus), MemMB: podresources.MilliFromFloat(memMB)},
		Ports:   podresources.NewRanges(ports...),
	}
}

func demand(cpus, memMB float64) podresources.Demand {
	return podresources.Demand{Scalars: res(cpus, memMB).Scalars}
}

func podRef(i int) PodRef {
	return PodRef{UID: types.UID(fmt.Sprintf("uid-%d", i)), Namespace: "default", Name: fmt.Sprintf("pod-%d", i)}
}

// checkInvariants fails the test when any agent's live reservations (plus the
// executor charge) exceed its offers, or two reservations share a port, or
// the cache's bookkeeping disagrees with its reservations.
func checkInvariants(t testing.TB, c *Cache) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.agents {
		sum := podresources.ByRole{}
		ports := map[uint64]string{}
		for _, r := range a.reservations {
			if c.reservations[r.ID] != r {
				t.Fatalf("agent %s holds reservation %s the cache does not", a.id, r.ID)
			}
			sum[r.Role] = sum[r.Role].Add(r.Claim)
			for _, span := range r.Claim.Ports {
				for p := span.Begin; p <= span.End; p++ {
					if other, dup := ports[p]; dup {
						t.Fatalf("port %d of agent %s claimed by %s and %s", p, a.id, other, r.ID)
					}
					ports[p] = r.ID
				}
			}
		}
		for _, r := range a.reservations {
			if _, ok := sum[r.Role]; !ok {
				sum[r.Role] = podresources.Resources{}
			}
		}
		for role, s := range sum {
			if got := a.reserved[role]; !got.Contains(s) || !s.Contains(got) {
				t.Fatalf("agent %s role %s: reserved sum %v, reservations add up to %v", a.id, role, got, s)
			}
			if need := s.Add(c.executorCharge(a, role)); !a.offered.get(role).Contains(need) {
				t.Fatalf("agent %s role %s double-booked: offered %v, reserved+executor %v", a.id, role, a.offered.get(role), need)
			}
		}
		fresh := podresources.ByRole{}
		for _, o := range a.offers {
			for _, e := range o.byRole {
				fresh[e.role] = fresh[e.role].Add(e.res)
			}
		}
		for role, r := range fresh {
			if off := a.offered.get(role); !off.Contains(r) || !r.Contains(off) {
				t.Fatalf("agent %s role %s: offered %v but offers add up to %v", a.id, role, off, r)
			}
		}
	}
	for uid, r := range c.byPod {
		if r.Pod.UID != uid || c.reservations[r.ID] != r {
			t.Fatalf("pod index entry %s is stale", uid)
		}
	}
}
