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
}

// Declinable removes and returns the offers to hand back to Mesos: those held
// longer than Config.DeclineAfter that no live reservation needs, and at once
// those with nothing k8sm can use (revocable only, persistent volumes, ...).
// An offer that backs a reservation is kept however old, because declining it
// would make the reservation a lie.
//
// Like Add, it holds the lock a few agents at a time: declining a whole
// allocation's offers at once held every Reserve, Get and Take meanwhile.
func (c *Cache) Declinable() Decline {
	now := c.cfg.Clock.Now()
	d := Decline{RefuseSeconds: c.cfg.RefuseSeconds}
	c.mu.Lock()
	var due []*agent
	for _, a := range c.agents {
		if c.declineDueLocked(a, now) {
			due = append(due, a)
		}
	}
	c.mu.Unlock()
	for len(due) > 0 {
		n := min(len(due), addBatch)
		c.mu.Lock()
		for _, a := range due[:n] {
			if c.agents[a.id] != a {
				continue // removed meanwhile
			}
			d.OfferIDs = append(d.OfferIDs, c.declineLocked(a, now)...)
		}
		c.mu.Unlock()
		due = due[n:]
	}
	sort.Strings(d.OfferIDs)
	if len(d.OfferIDs) > 0 {
		klog.V(4).InfoS("Declining unused offers", "offers", len(d.OfferIDs), "refuseSeconds", d.RefuseSeconds)
	}
	return d
}

// declineDueLocked is whether one of a's offers may be declined at now.
func (c *Cache) declineDueLocked(a *agent, now time.Time) bool {
	for _, o := range a.offers {
		if !o.usable || now.Sub(o.received) >= c.cfg.DeclineAfter {
			return true
		}
	}
	return false
}

// declineLocked removes and returns a's offers to decline at now.
func (c *Cache) declineLocked(a *agent, now time.Time) []string {
	var candidates []*offer
	for _, o := range a.offers {
		if !o.usable || now.Sub(o.received) >= c.cfg.DeclineAfter {
			candidates = append(candidates, o)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	sort.Slice(candidates, func(i, j int) bool {
		if !candidates[i].received.Equal(candidates[j].received) {
			return candidates[i].received.Before(candidates[j].received)
		}
		return candidates[i].id < candidates[j].id
	})
	offered := a.offered.byRole()
	var drop []string
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
		return nil
	}
	c.removeOffersLocked(a, drop)
	c.changedLocked(a)
	return drop
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
// with whatever Declinable returns (when non-empty). It is the loop the
// broker's Mesos side runs; tests drive Expire and Declinable directly.
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
		if d := c.Declinable(); len(d.OfferIDs) > 0 && decline != nil {
			decline(ctx, d)
		}
	}
}
