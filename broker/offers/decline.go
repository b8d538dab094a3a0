package offers

import (
	"context"
	"sort"
	"time"

	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// Decline is one DECLINE call: offers of any agents, one filter.
type Decline struct {
	OfferIDs      []string
	RefuseSeconds float64
	// Held is how many offers past Config.DeclineAfter were kept because a
	// pending pod could use them (Config.HoldWhilePending).
	Held int
}

// Declinable removes and returns the offers to hand back to Mesos: those held
// longer than Config.DeclineAfter that no live reservation needs, and at once
// those with nothing k8sm can use (revocable only, persistent volumes, ...).
// An offer that backs a reservation is kept however old, because declining it
// would make the reservation a lie. While a pending pod could use an agent's
// offers (SetPendingDemands) they are kept up to Config.HoldWhilePending
// instead: declined, they would come back in the next allocation anyway,
// and each such round trip is a wave of changes through the whole system.
//
// Like Add, it holds the lock a few agents at a time: declining a whole
// allocation's offers at once held every Reserve, Get and Take meanwhile, and
// so would trying the pending demands on every agent.
func (c *Cache) Declinable() Decline {
	now := c.cfg.Clock.Now()
	d := Decline{RefuseSeconds: c.cfg.RefuseSeconds}
	c.mu.Lock()
	var agents []*agent
	for _, a := range c.agents {
		if c.oldOffersLocked(a, now) {
			agents = append(agents, a)
		}
	}
	c.mu.Unlock()
	for len(agents) > 0 {
		n := min(len(agents), addBatch)
		c.mu.Lock()
		for _, a := range agents[:n] {
			if c.agents[a.id] != a {
				continue // removed meanwhile
			}
			ids, held := c.declineLocked(a, now)
			d.OfferIDs = append(d.OfferIDs, ids...)
			d.Held += held
		}
		c.mu.Unlock()
		agents = agents[n:]
	}
	sort.Strings(d.OfferIDs)
	if len(d.OfferIDs) > 0 {
		klog.V(4).InfoS("Declining unused offers", "offers", len(d.OfferIDs), "refuseSeconds", d.RefuseSeconds)
	}
	if d.Held > 0 {
		klog.V(4).InfoS("Holding offers for pending pods", "offers", d.Held, "upTo", c.cfg.HoldWhilePending)
	}
	return d
}

// oldOffersLocked is whether one of a's offers may be declined at now, were
// no pending pod to use it: only such an agent is worth a closer look.
func (c *Cache) oldOffersLocked(a *agent, now time.Time) bool {
	for _, o := range a.offers {
		if !o.usable || now.Sub(o.received) >= c.cfg.DeclineAfter {
			return true
		}
	}
	return false
}

// mayDecline says whether o may be handed back at now: at once when k8sm
// cannot use it, after DeclineAfter, or, when hold (a pending pod could use
// its agent), after HoldWhilePending.
func (c *Cache) mayDecline(o *offer, now time.Time, hold bool) bool {
	if !o.usable {
		return true
	}
	age := now.Sub(o.received)
	if age < c.cfg.DeclineAfter {
		return false
	}
	return !hold || age >= c.cfg.HoldWhilePending
}

// declineLocked removes and returns a's offers to decline at now, and counts
// those past DeclineAfter kept for pending pods. Whether a pending pod could
// use the agent is worked out only once one of its offers is that old.
func (c *Cache) declineLocked(a *agent, now time.Time) (drop []string, held int) {
	hold, checked := false, false
	var candidates []*offer
	for _, o := range a.offers {
		old := o.usable && now.Sub(o.received) >= c.cfg.DeclineAfter
		if old && !checked {
			hold, checked = c.holdLocked(a), true
		}
		switch {
		case c.mayDecline(o, now, hold):
			candidates = append(candidates, o)
		case old:
			held++
		}
	}
	if len(candidates) == 0 {
		return nil, held
	}
	sort.Slice(candidates, func(i, j int) bool {
		if !candidates[i].received.Equal(candidates[j].received) {
			return candidates[i].received.Before(candidates[j].received)
		}
		return candidates[i].id < candidates[j].id
	})
	offered := a.offered.byRole()
	for _, o := range candidates {
		if len(a.reservations) > 0 && !c.stillHoldsLocked(a, offered, o) {
			continue
		}
		for _, e := range o.byRole {
			offered[e.role] = offered[e.role].Subtract(e.res)
		}
		drop = append(drop, o.id)
	}
	if len(drop) == 0 {
		return nil, held
	}
	c.removeOffersLocked(a, drop)
	c.changedLocked(a)
	return drop, held
}

// stillHoldsLocked reports whether offered without o still holds every
// reservation of a plus the executor charge of their roles.
func (c *Cache) stillHoldsLocked(a *agent, offered podresources.ByRole, o *offer) bool {
	for role := range rolesInUse(a) {
		left := offered[role].Subtract(o.byRole.get(role))
		if !left.Contains(a.reserved[role].Add(c.executorCharge(a, role))) {
			return false
		}
	}
	return true
}

// Run expires reservations every interval until ctx ends and calls decline
// with whatever Declinable returns (an empty Decline too: its Held counts).
// It is the loop the broker's Mesos side runs; tests drive Expire and
// Declinable directly.
func (c *Cache) Run(ctx context.Context, interval time.Duration, decline func(context.Context, Decline)) {
	t := c.cfg.Clock.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		for _, r := range c.Expire() {
			klog.FromContext(ctx).V(2).Info("Reservation expired", "reservation", r.ID, "pod", klog.KRef(r.Pod.Namespace, r.Pod.Name), "node", r.Hostname)
		}
		// Called with nothing to decline too: Held is news.
		if decline != nil {
			decline(ctx, c.Declinable())
		}
	}
}
