package mesosoffers

import (
	"strconv"

	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// fitIndex keeps, for the demand shapes PreFilter asked about lately, the
// set of agents whose view (offers less local claims) holds the shape. It
// is kept as the view changes, one agent at a time, so that PreFilter does
// not fit every agent of the mirror for every pod: the pods of a burst
// mostly share a few shapes (a Deployment's replicas have one), and a
// change touches one agent. The mirror's lock guards it.
//
// A set handed out is shared and does not change until the index hands
// out the same shape's set again: changes meanwhile wait in pending, and
// that next hand-out applies them, one per agent that changed (copying the
// set instead cost the watch, under the mirror's lock, a set as large as
// the agents offered per pod at 5,000 agents: docs/benchmarks.md). That is
// safe because sets are handed out only to PreFilter (fitting is for
// tests), which runs in the scheduler's serial cycle, and a cycle's readers
// of the set are done before the next cycle's PreFilter: the scheduler
// clones NodeNames before Filter (PreFilterResult.Merge), and PostFilter
// (leftOut) runs in the same cycle. Changes that leave an agent on the
// same side of the shape (a small pod's claim on a big agent, the common
// case) record nothing.
type fitIndex struct {
	shapes map[string]*fitShape
	tick   uint64
}

// maxFitShapes bounds the index: each shape costs a fit per changed agent.
const maxFitShapes = 16

type fitShape struct {
	demand podresources.Demand
	hosts  sets.Set[string]
	// shared is whether hosts was handed out; its changes then wait in
	// pending: each host whose side differs from hosts', and the side.
	shared  bool
	pending map[string]bool
	// count is how many agents hold the shape now (hosts with pending).
	count int
	used  uint64
}

// has is whether host holds the shape now.
func (s *fitShape) has(host string) bool {
	if holds, ok := s.pending[host]; ok {
		return holds
	}
	return s.hosts.Has(host)
}

// handOut applies the pending changes and marks hosts handed out: the
// set handed out last is no longer read (fitIndex).
func (s *fitShape) handOut() sets.Set[string] {
	s.settle()
	s.shared = true
	return s.hosts
}

// settle applies the pending changes to hosts, which is no longer read.
func (s *fitShape) settle() {
	for host, holds := range s.pending {
		if holds {
			s.hosts.Insert(host)
		} else {
			s.hosts.Delete(host)
		}
	}
	clear(s.pending)
	s.shared = false
}

func newFitIndex() fitIndex { return fitIndex{shapes: map[string]*fitShape{}} }

// shapeKey names the demand's shape: everything Fit reads. PreEnqueue and
// PreFilter name the pod's shape for the index and the parked pods, so it
// is built without fmt: one allocation, the string.
func shapeKey(d podresources.Demand) string {
	var buf [96]byte
	b := buf[:0]
	for _, v := range [...]podresources.Milli{d.CPUs, d.MemMB, d.DiskMB, d.GPUs} {
		b = strconv.AppendInt(b, int64(v), 10)
		b = append(b, '/')
	}
	for i, p := range d.HostPorts {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, p, 10)
	}
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(d.WildcardPorts), 10)
	for _, r := range d.Roles {
		b = append(b, '/')
		b = strconv.AppendQuote(b, r)
	}
	return string(b)
}

// fittingLocked returns the agents of agents that hold d. The set is
// shared: callers must not change it, and must be done reading the set
// this index handed out last for d (fitIndex). The mirror's write lock is
// held.
func (x *fitIndex) fittingLocked(d podresources.Demand, agents map[string]*agent) sets.Set[string] {
	return x.shapeLocked(d, agents).handOut()
}

// fittingAtMostLocked is fittingLocked's set when it has at most limit
// agents, and nil (no set handed out: changes then apply to the index's
// set in place) when it has more.
func (x *fitIndex) fittingAtMostLocked(d podresources.Demand, agents map[string]*agent, limit int) sets.Set[string] {
	s := x.shapeLocked(d, agents)
	if s.count > limit {
		// The caller hands the index's last set out no more either.
		s.settle()
		return nil
	}
	return s.handOut()
}

// anyLocked is whether an agent of agents holds d. It hands out no set, so
// the next change need not copy one: PreEnqueue asks it for every pod add
// and update. The mirror's write lock is held.
func (x *fitIndex) anyLocked(d podresources.Demand, agents map[string]*agent) bool {
	return x.shapeLocked(d, agents).count > 0
}

// shapeLocked is d's shape, fitted against every agent when it is new.
func (x *fitIndex) shapeLocked(d podresources.Demand, agents map[string]*agent) *fitShape {
	x.tick++
	key := shapeKey(d)
	s := x.shapes[key]
	if s == nil {
		if len(x.shapes) >= maxFitShapes {
			x.evictLocked()
		}
		s = &fitShape{demand: d, hosts: sets.New[string]()}
		for host, a := range agents {
			if a.holds(d) {
				s.hosts.Insert(host)
			}
		}
		s.count = s.hosts.Len()
		x.shapes[key] = s
	}
	s.used = x.tick
	return s
}

func (x *fitIndex) evictLocked() {
	var oldest string
	for key, s := range x.shapes {
		if oldest == "" || s.used < x.shapes[oldest].used {
			oldest = key
		}
	}
	delete(x.shapes, oldest)
}

// changedLocked moves host to the right side of every shape: a is the
// agent's view now, nil when it has none.
func (x *fitIndex) changedLocked(host string, a *agent) {
	for _, s := range x.shapes {
		holds := a != nil && a.holds(s.demand)
		if holds == s.has(host) {
			continue
		}
		if holds {
			s.count++
		} else {
			s.count--
		}
		switch {
		case !s.shared:
			if holds {
				s.hosts.Insert(host)
			} else {
				s.hosts.Delete(host)
			}
		case holds == s.hosts.Has(host):
			delete(s.pending, host) // back to the side handed out
		default:
			if s.pending == nil {
				s.pending = map[string]bool{}
			}
			s.pending[host] = holds
		}
	}
}
