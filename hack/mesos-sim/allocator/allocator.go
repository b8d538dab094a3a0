// Package allocator decides which framework role gets which agent's free
// resources, following the observable rules of Mesos's hierarchical DRF
// allocator: whole-agent offers per cycle, per-role suppression and revival,
// decline filters that expire, reserved resources offered only to their role.
//
// It is pure bookkeeping without locks or timers; the master drives it under
// its own lock.
package allocator

import (
	"sort"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/resources"
)

// Minimum resources worth offering, the master's min_allocatable_resources
// default ("cpus:0.01|mem:32").
const (
	MinCPUs = 0.01
	MinMem  = 32
)

// Allocation is one offer to be made.
type Allocation struct {
	FrameworkID string
	AgentID     string
	Role        string
	Resources   mesos.Resources
}

type agent struct {
	total     mesos.Resources
	allocated map[string]mesos.Resources // by framework
	active    bool
	// derived is what a cycle computes from total and allocated, kept
	// until either changes (nil: to be computed). A cycle visits every
	// agent under the master's lock, and recomputing these for each (the
	// resources' arithmetic clones protobufs by reflection) cost 9–20 ms
	// per cycle at 1,000 agents although nearly all of them were wholly
	// offered or filtered, and every ACCEPT arriving meanwhile waited.
	derived *derived
}

type derived struct {
	free  mesos.Resources
	total usage
	used  map[string]usage // by framework
	gpus  uint64
	// byRole is free as allocatable to a role, filled as roles are asked.
	byRole map[string]mesos.Resources
}

// changed drops what was derived from the agent's resources.
func (ag *agent) changed() { ag.derived = nil }

func (ag *agent) derive() *derived {
	if ag.derived != nil {
		return ag.derived
	}
	free := ag.total.Clone()
	d := &derived{total: cpusMem(ag.total), used: make(map[string]usage, len(ag.allocated)), byRole: map[string]mesos.Resources{}}
	for fw, used := range ag.allocated {
		free = free.Minus(used...)
		d.used[fw] = cpusMem(used)
	}
	d.free = free
	d.gpus, _ = resources.GPUs(ag.total...)
	ag.derived = d
	return d
}

// offerable is what the agent has free for role, or nil when that is not
// worth offering; callers must not modify it.
func (ag *agent) offerable(role string) mesos.Resources {
	d := ag.derive()
	if len(d.free) == 0 {
		return nil
	}
	rs, ok := d.byRole[role]
	if !ok {
		rs = allocatableTo(d.free, role)
		if !allocatable(rs) {
			rs = nil
		}
		d.byRole[role] = rs
	}
	return rs
}

type filter struct {
	resources mesos.Resources
	expires   time.Time
}

type framework struct {
	gpuAware   bool
	roles      []string
	suppressed map[string]bool
	active     bool
	// filters by agent id: a cycle looks up each agent's, as the real
	// allocator does (frameworkFilters by agent), instead of scanning every
	// filter for every agent — with one filter per declined agent that
	// was quadratic in the agents, under the master's lock.
	filters map[string][]filter
	// covered remembers, by agent id and role, that a filter covered the
	// agent's offerable resources until a time: while the agent's
	// resources did not change (the same derived) it still does, without
	// comparing resources again each cycle. Revive forgets it with the filters.
	covered map[coverKey]cover
}

type coverKey struct{ agent, role string }

type cover struct {
	of    *derived
	until time.Time
}

// Allocator tracks agent resources and framework allocation state.
type Allocator struct {
	agents     map[string]*agent
	frameworks map[string]*framework
}

// New returns an empty allocator.
func New() *Allocator {
	return &Allocator{agents: map[string]*agent{}, frameworks: map[string]*framework{}}
}

// Normalize strips per-offer allocation info so that resources can be compared
// and added across offers.
func Normalize(rs mesos.Resources) mesos.Resources {
	out := make(mesos.Resources, 0, len(rs))
	for _, r := range rs {
		r := *proto(r)
		r.AllocationInfo = nil
		out.Add1(r)
	}
	return out
}

func proto(r mesos.Resource) *mesos.Resource {
	c := r
	return &c
}

// AddAgent registers an agent's total resources; used is what already runs there.
func (a *Allocator) AddAgent(id string, total mesos.Resources, used map[string]mesos.Resources) {
	ag := &agent{total: Normalize(total), allocated: map[string]mesos.Resources{}, active: true} // derived: nil, computed when first needed
	for fw, rs := range used {
		ag.allocated[fw] = Normalize(rs)
	}
	a.agents[id] = ag
}

// RemoveAgent forgets an agent.
func (a *Allocator) RemoveAgent(id string) { delete(a.agents, id) }

// SetAgentActive stops or resumes offers from an agent (disconnected agents are not offered).
func (a *Allocator) SetAgentActive(id string, active bool) {
	if ag := a.agents[id]; ag != nil {
		ag.active = active
	}
}

// UpdateAgentTotal replaces an agent's total, e.g. after a reservation changed its shape.
func (a *Allocator) UpdateAgentTotal(id string, total mesos.Resources) {
	if ag := a.agents[id]; ag != nil {
		ag.total = Normalize(total)
		ag.changed()
	}
}

// AgentTotal returns the agent's total resources.
func (a *Allocator) AgentTotal(id string) mesos.Resources {
	if ag := a.agents[id]; ag != nil {
		return ag.total.Clone()
	}
	return nil
}

// AddFramework registers a framework with its roles.
func (a *Allocator) AddFramework(id string, roles, suppressed []string) {
	fw := a.frameworks[id]
	if fw == nil {
		fw = &framework{}
		a.frameworks[id] = fw
	}
	fw.roles = append([]string(nil), roles...)
	fw.suppressed = map[string]bool{}
	for _, r := range suppressed {
		fw.suppressed[r] = true
	}
	fw.active = true
}

// SetGPUAware records the GPU_RESOURCES capability: only such frameworks
// are offered agents that have GPUs, so that others do not crowd GPU
// machines (the real allocator's rule).
func (a *Allocator) SetGPUAware(id string, aware bool) {
	if fw := a.frameworks[id]; fw != nil {
		fw.gpuAware = aware
	}
}

// SetFrameworkActive deactivates a disconnected framework (it gets no offers) or reactivates it.
func (a *Allocator) SetFrameworkActive(id string, active bool) {
	if fw := a.frameworks[id]; fw != nil {
		fw.active = active
	}
}

// RemoveFramework forgets a framework and frees everything allocated to it.
func (a *Allocator) RemoveFramework(id string) {
	delete(a.frameworks, id)
	for _, ag := range a.agents {
		if _, ok := ag.allocated[id]; ok {
			delete(ag.allocated, id)
			ag.changed()
		}
	}
}

// Allocate marks resources as used by a framework on an agent (tasks found on a re-registering agent).
func (a *Allocator) Allocate(fw, agentID string, rs mesos.Resources) {
	if ag := a.agents[agentID]; ag != nil {
		cur := ag.allocated[fw]
		ag.allocated[fw] = cur.Plus(Normalize(rs)...)
		ag.changed()
	}
}

// Recover returns resources to the free pool. A positive refuse installs a
// decline filter: the framework will not see these resources (or a subset) on
// that agent again until it expires or the framework revives.
func (a *Allocator) Recover(fw, agentID string, rs mesos.Resources, refuse time.Duration, now time.Time) {
	rs = Normalize(rs)
	if ag := a.agents[agentID]; ag != nil {
		cur := ag.allocated[fw]
		cur = cur.Minus(rs...)
		if len(cur) == 0 {
			delete(ag.allocated, fw)
		} else {
			ag.allocated[fw] = cur
		}
		ag.changed()
	}
	if f := a.frameworks[fw]; f != nil && refuse > 0 && len(rs) > 0 {
		if f.filters == nil {
			f.filters = map[string][]filter{}
		}
		f.filters[agentID] = append(f.filters[agentID], filter{resources: rs, expires: now.Add(refuse)})
	}
}

// Revive clears filters and unsuppresses the given roles (all roles when empty).
func (a *Allocator) Revive(fw string, roles []string) {
	f := a.frameworks[fw]
	if f == nil {
		return
	}
	f.filters = nil
	f.covered = nil
	if len(roles) == 0 {
		roles = f.roles
	}
	for _, r := range roles {
		delete(f.suppressed, r)
	}
}

// Suppress stops offers for the given roles (all roles when empty).
func (a *Allocator) Suppress(fw string, roles []string) {
	f := a.frameworks[fw]
	if f == nil {
		return
	}
	if len(roles) == 0 {
		roles = f.roles
	}
	for _, r := range roles {
		f.suppressed[r] = true
	}
}

// Suppressed reports the suppressed roles of a framework, for the state endpoint.
func (a *Allocator) Suppressed(fw string) []string {
	f := a.frameworks[fw]
	if f == nil {
		return nil
	}
	var out []string
	for r := range f.suppressed {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

// allocatableTo keeps resources that are unreserved or reserved to role.
func allocatableTo(rs mesos.Resources, role string) mesos.Resources {
	var out mesos.Resources
	for i := range rs {
		if rs[i].IsAllocatableTo(role) {
			out.Add1(rs[i])
		}
	}
	return out
}

func allocatable(rs mesos.Resources) bool {
	if cpus, ok := resources.CPUs(rs...); ok && cpus >= MinCPUs {
		return true
	}
	if mem, ok := resources.Memory(rs...); ok && mem >= MinMem {
		return true
	}
	return false
}

type usage struct{ cpus, mem float64 }

func cpusMem(rs mesos.Resources) usage {
	c, _ := resources.CPUs(rs...)
	m, _ := resources.Memory(rs...)
	return usage{c, float64(m)}
}

// Cycle runs one allocation round: every active agent's free resources go,
// whole, to the framework role with the lowest dominant share that is not
// suppressed and has no filter covering them. The returned allocations are
// already counted as allocated.
func (a *Allocator) Cycle(now time.Time) []Allocation {
	var fws []string
	for id, f := range a.frameworks {
		for aid, flts := range f.filters {
			kept := flts[:0]
			for _, flt := range flts {
				if now.Before(flt.expires) {
					kept = append(kept, flt)
				}
			}
			if len(kept) == 0 {
				delete(f.filters, aid)
			} else {
				f.filters[aid] = kept
			}
		}
		if f.active {
			fws = append(fws, id)
		}
	}
	// Dominant shares are computed once and updated as offers are made, so
	// a cycle stays linear in the number of agents.
	var total usage
	used := map[string]usage{}
	var agentIDs []string
	for id, ag := range a.agents {
		d := ag.derive()
		total.cpus += d.total.cpus
		total.mem += d.total.mem
		for fw, u := range d.used {
			cur := used[fw]
			used[fw] = usage{cur.cpus + u.cpus, cur.mem + u.mem}
		}
		if ag.active && len(d.free) > 0 {
			agentIDs = append(agentIDs, id)
		}
	}
	share := func(fw string) float64 {
		u := used[fw]
		s := 0.0
		if total.cpus > 0 {
			s = u.cpus / total.cpus
		}
		if total.mem > 0 && u.mem/total.mem > s {
			s = u.mem / total.mem
		}
		return s
	}
	sort.Strings(agentIDs)
	var out []Allocation
	for _, aid := range agentIDs {
		ag := a.agents[aid]
		sort.SliceStable(fws, func(i, j int) bool {
			si, sj := share(fws[i]), share(fws[j])
			if si != sj {
				return si < sj
			}
			return fws[i] < fws[j]
		})
		for _, fid := range fws {
			f := a.frameworks[fid]
			if ag.derive().gpus > 0 && !f.gpuAware {
				continue
			}
			for _, role := range f.roles {
				if f.suppressed[role] {
					continue
				}
				offered := ag.offerable(role)
				if offered == nil || f.filtered(aid, role, ag.derive(), offered, now) {
					continue
				}
				offered = offered.Clone()
				ag.allocated[fid] = ag.allocated[fid].Plus(offered...)
				ag.changed()
				u, cur := cpusMem(offered), used[fid]
				used[fid] = usage{cur.cpus + u.cpus, cur.mem + u.mem}
				out = append(out, Allocation{FrameworkID: fid, AgentID: aid, Role: role, Resources: offered})
			}
		}
	}
	return out
}

// filtered reports whether one of f's filters on the agent covers offered
// (the agent's offerable resources for role, derived in d).
func (f *framework) filtered(agentID, role string, d *derived, offered mesos.Resources, now time.Time) bool {
	key := coverKey{agentID, role}
	if c, ok := f.covered[key]; ok && c.of == d && now.Before(c.until) {
		return true
	}
	for _, flt := range f.filters[agentID] {
		if resources.ContainsAll(flt.resources, offered) {
			if f.covered == nil {
				f.covered = map[coverKey]cover{}
			}
			f.covered[key] = cover{of: d, until: flt.expires}
			return true
		}
	}
	delete(f.covered, key)
	return false
}
