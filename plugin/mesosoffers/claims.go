package mesosoffers

import (
	"errors"
	"fmt"

	"k8s.io/apimachinery/pkg/types"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// The plugin's own claims on top of the broker's offer view. Reserve claims
// in memory, computing the claim with pkg/podresources as the broker does
// (ports included), so that the next pod's Filter sees the resources taken
// at once; the broker's Reserve is sent without waiting and answers in the
// binding cycle. A claim stays in the overlay until the broker's view shows
// it (the agent's version reaches the one Reserve answered with), is
// refused, or is dropped by Unreserve; a watch that ends or a broker that
// restarted drops them all.

// claim is one pod's local claim on one agent.
type claim struct {
	uid  types.UID
	host string
	role string
	// res holds the scalars and the concrete ports, wildcard ports the
	// ports chosen for the pod's wildcard ports, in the pod's order.
	res      podresources.Resources
	wildcard []uint64
	// version is the agent's version that includes the broker's
	// reservation (ReserveResponse.resource_version); 0 until it answered.
	version uint64
	// done is closed once the broker's answer to the claim's Reserve is
	// known (brokerClaim.done).
	done chan struct{}
}

// overlay holds the claims by host and by pod.
type overlay struct {
	byHost map[string]map[types.UID]*claim
	byPod  map[types.UID]*claim
}

func newOverlay() overlay {
	return overlay{byHost: map[string]map[types.UID]*claim{}, byPod: map[types.UID]*claim{}}
}

func (o overlay) len() int { return len(o.byPod) }

func (o overlay) hosts() map[string]map[types.UID]*claim { return o.byHost }

func (o overlay) add(c *claim) {
	if o.byHost[c.host] == nil {
		o.byHost[c.host] = map[types.UID]*claim{}
	}
	o.byHost[c.host][c.uid] = c
	o.byPod[c.uid] = c
}

func (o overlay) remove(c *claim) {
	delete(o.byPod, c.uid)
	if cs := o.byHost[c.host]; cs != nil {
		delete(cs, c.uid)
		if len(cs) == 0 {
			delete(o.byHost, c.host)
		}
	}
}

func (o overlay) dropHost(host string) {
	for uid := range o.byHost[host] {
		delete(o.byPod, uid)
	}
	delete(o.byHost, host)
}

// errNoOffers is the reason a claim fails on an agent the view lacks.
var errNoOffers = errors.New("mesos: no outstanding offers from the node")

// errLaunching is the reason a claim fails on an agent whose offers a
// launch in flight takes (launching.go).
var errLaunching = errors.New(reasonLaunching)

// claim takes d from the agent's resources in the view for pod uid and
// returns the claim and the view's epoch, or what is short. A pod holds one
// claim: claiming again drops its earlier one.
func (m *mirror) claim(host string, uid types.UID, d podresources.Demand) (*claim, string, podresources.Shortfalls, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced {
		return nil, "", nil, fmt.Errorf("mesos: no offer view from the k8sm broker: %w", m.lastErr)
	}
	if old := m.claims.byPod[uid]; old != nil {
		m.claims.remove(old)
		m.recomputeLocked(old.host)
	}
	a := m.agents[host]
	if a == nil {
		return nil, "", nil, errNoOffers
	}
	if a.launching {
		return nil, "", nil, errLaunching
	}
	role, short := a.available.Fit(d)
	if !short.Fits() {
		return nil, "", short, nil
	}
	res, wildcard, ok := a.available[role].Claim(d)
	if !ok {
		return nil, "", nil, fmt.Errorf("claiming %s on node %s: fit but could not be claimed", d, host)
	}
	c := &claim{uid: uid, host: host, role: role, res: res, wildcard: wildcard, done: make(chan struct{})}
	m.claims.add(c)
	m.recomputeLocked(host)
	return c, m.epoch, nil, nil
}

// answered notes the broker's grant of c: once the agent's view reaches
// version it shows the reservation and the claim leaves the overlay.
func (m *mirror) answered(c *claim, version uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claims.byPod[c.uid] != c {
		return
	}
	c.version = version
	m.recomputeLocked(c.host)
}

// drop removes c from the overlay (refused, or released by Unreserve) and
// returns the agent it gave resources back to, nil if none.
func (m *mirror) drop(c *claim) *agent {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.claims.byPod[c.uid] != c {
		return nil
	}
	m.claims.remove(c)
	return m.recomputeLocked(c.host)
}

// claimCount is the number of claims in the overlay.
func (m *mirror) claimCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.claims.len()
}

// recomputeLocked sets the host's agent in the view: the broker's copy less
// the claims it does not show yet (claims it shows leave the overlay), or
// nothing available while a launch it does not show yet takes the agent's
// offers. It returns the agent, nil when the broker has none.
func (m *mirror) recomputeLocked(host string) *agent {
	b := m.base[host]
	if b == nil {
		m.setLocked(host, nil)
		return nil
	}
	var pending []*claim
	for _, c := range m.claims.byHost[host] {
		if c.version != 0 && b.version >= c.version {
			m.claims.remove(c)
			continue
		}
		pending = append(pending, c)
	}
	if m.launchingLocked(host, b.version) {
		cp := *b
		cp.available, cp.sorted, cp.launching = podresources.ByRole{}, nil, true
		m.setLocked(host, &cp)
		return &cp
	}
	if len(pending) == 0 {
		m.setLocked(host, b)
		return b
	}
	cp := *b
	cp.available = b.available.Clone()
	for _, c := range pending {
		cp.available[c.role] = cp.available[c.role].Subtract(c.res)
	}
	cp.sorted = sortedRoles(cp.available)
	m.setLocked(host, &cp)
	return &cp
}
