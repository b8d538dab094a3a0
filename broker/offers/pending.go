package offers

import (
	"cmp"
	"slices"
	"strings"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// maxPendingDemands bounds the demands Declinable tries on an agent. A burst
// is mostly replicas of a few templates, so the distinct demands are few;
// beyond the bound they are merged into floors (reduceDemands), which keeps
// the check cheap on 10,000 agents at the price of holding, up to
// Config.HoldWhilePending, an offer that a floor fits and no pod does.
const maxPendingDemands = 16

// SetPendingDemands says what the pods waiting for resources need (each
// pod's demand, roles resolved by the role policy; duplicates are fine).
// While one of them could use an agent's offers, Declinable keeps those
// offers past Config.DeclineAfter, up to Config.HoldWhilePending. An empty
// list (nothing pending) makes Declinable decline as it always did.
func (c *Cache) SetPendingDemands(ds []podresources.Demand) {
	reduced := reduceDemands(ds, c.cfg.PodDefaults)
	c.mu.Lock()
	c.pending = reduced
	c.mu.Unlock()
}

// reduceDemands charges the pod defaults (as Reserve does), drops
// duplicates and, past maxPendingDemands, merges demands into floors: one
// per role set, then one for any role. A floor fits wherever one of its
// demands does, so merging never declines an offer a pod could use.
func reduceDemands(ds []podresources.Demand, defaults podresources.Scalars) []podresources.Demand {
	var out []podresources.Demand
	seen := map[string]bool{}
	for _, d := range ds {
		d = d.WithDefaults(defaults)
		k := demandKey(d)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, d)
	}
	// holdLocked tries them in order: those without ports cost no range
	// arithmetic.
	slices.SortStableFunc(out, func(a, b podresources.Demand) int { return cmp.Compare(hasPorts(a), hasPorts(b)) })
	if len(out) <= maxPendingDemands {
		return out
	}
	byRoles := map[string]int{}
	var floors []podresources.Demand
	for _, d := range out {
		k := strings.Join(d.Roles, ",")
		if i, ok := byRoles[k]; ok {
			floors[i] = floor(floors[i], d)
			continue
		}
		byRoles[k] = len(floors)
		floors = append(floors, d)
	}
	if len(floors) <= maxPendingDemands {
		return floors
	}
	all := floors[0]
	for _, d := range floors[1:] {
		all = floor(all, d)
	}
	all.Roles = nil // any role
	return []podresources.Demand{all}
}

// floor is the least of a and b: it fits wherever either does (Roles are
// a's; callers merge demands of one role set, or clear them).
func floor(a, b podresources.Demand) podresources.Demand {
	f := podresources.Demand{
		Scalars: podresources.Scalars{
			CPUs: min(a.CPUs, b.CPUs), MemMB: min(a.MemMB, b.MemMB),
			DiskMB: min(a.DiskMB, b.DiskMB), GPUs: min(a.GPUs, b.GPUs),
		},
		WildcardPorts: min(a.WildcardPorts, b.WildcardPorts),
		Roles:         a.Roles,
	}
	for _, p := range a.HostPorts {
		if slices.Contains(b.HostPorts, p) {
			f.HostPorts = append(f.HostPorts, p)
		}
	}
	return f
}

func hasPorts(d podresources.Demand) int {
	if len(d.HostPorts) > 0 || d.WildcardPorts > 0 {
		return 1
	}
	return 0
}

func demandKey(d podresources.Demand) string {
	return d.String()
}

// holdLocked reports whether a pending pod's demand fits in what a offers
// now (its reservations and executor charge taken off, as Reserve sees it):
// then its offers are worth keeping past DeclineAfter. It runs for every
// agent with old offers on every sweep, so the scalars are tried first and
// port ranges worked out only for a demand with ports that passed them.
func (c *Cache) holdLocked(a *agent) bool {
	if len(c.pending) == 0 || c.cfg.HoldWhilePending <= c.cfg.DeclineAfter || a.draining != "" {
		return false
	}
	for _, e := range a.offered {
		reserved, charge := a.reserved[e.role], c.executorCharge(a, e.role)
		free := podresources.Resources{Scalars: e.res.Scalars.Sub(reserved.Scalars).Sub(charge.Scalars)}
		portsKnown := false
		for _, d := range c.pending {
			if !d.AllowsRole(e.role) || !free.Holds(podresources.Demand{Scalars: d.Scalars}) {
				continue
			}
			if len(d.HostPorts) == 0 && d.WildcardPorts <= 0 {
				return true
			}
			if !portsKnown {
				free.Ports, portsKnown = e.res.Ports, true
				if len(reserved.Ports) > 0 || len(charge.Ports) > 0 {
					free.Ports = free.Ports.Minus(reserved.Ports).Minus(charge.Ports)
				}
			}
			if free.Holds(d) {
				return true
			}
		}
	}
	return false
}
