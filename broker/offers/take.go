package offers

import (
	"fmt"
	"slices"
	"sort"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// Launch is what one ACCEPT on one agent must carry.
type Launch struct {
	AgentID  string
	Hostname string
	// OfferIDs to ACCEPT. Whatever of them the tasks and executors do not use
	// (Remainder) goes back to Mesos with the ACCEPT.
	OfferIDs []string
	// Executor resources by role, for each role whose executor this launch
	// starts; nil when the executors run already.
	Executor map[string]mesos.Resources
	// Tasks, one LAUNCH each, in the order the reservation ids were given.
	Tasks     []Task
	Remainder mesos.Resources
	// Lost are other reservations of the agent that this launch left without
	// resources (their offers were consumed by the ACCEPT).
	Lost []Reservation
	// Failed maps reservation ids that could not be taken to why (ErrExpired,
	// ErrLost, ErrLaunched, ErrUnknownReservation, ErrInvalid for one on
	// another agent).
	Failed map[string]error
	// Version is the agent's version once the offers left the cache: a
	// watcher's view of the agent at this version or a later one no longer
	// shows them. A scheduler that has sent a launch treats the agent as
	// taken until its view gets there. 0 when nothing was taken.
	Version uint64
}

// Task is one reserved pod's share of a Launch.
type Task struct {
	Reservation
	// Resources for the TaskInfo: cut from the accepted offers, keeping
	// their reservation and allocation info.
	Resources mesos.Resources
}

// Take converts reservations of one agent into one ACCEPT: it picks the
// fewest offers (oldest first) that hold them, cuts each task's resources out
// of them, removes those offers and the reservations from the cache, and
// marks the executors it starts as running. Reservations that are not live or
// not on the agent of the first live one are reported in Failed and left as
// they are. Other reservations of the agent that the consumed offers were
// backing are lost.
//
// If the ACCEPT then fails, the offers are gone anyway (Mesos rescinds or
// re-offers them); the caller should SetExecutorRunning(agent, role, false)
// for the executors it did not start.
func (c *Cache) Take(ids ...string) (*Launch, error) {
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()

	l := &Launch{Failed: map[string]error{}}
	var batch []*Reservation
	var a *agent
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		r, err := c.liveLocked(id, now)
		if err != nil {
			l.Failed[id] = err
			continue
		}
		if a == nil {
			a = c.agents[r.AgentID]
		}
		if r.AgentID != a.id {
			l.Failed[id] = fmt.Errorf("%w: reservation %s is on agent %s, not %s; one ACCEPT covers one agent", ErrInvalid, id, r.AgentID, a.id)
			continue
		}
		batch = append(batch, r)
	}
	if len(batch) == 0 {
		return l, nil
	}
	l.AgentID, l.Hostname = a.id, a.hostname
	if a.draining != "" {
		for _, r := range batch {
			err := fmt.Errorf("%w: agent %s (%s) takes no new pods: %s", ErrLost, a.hostname, a.id, a.draining)
			l.Failed[r.ID] = err
			c.releaseLocked(r, err)
		}
		return l, nil
	}

	need := podresources.ByRole{}
	execRoles := map[string]bool{}
	for _, r := range batch {
		need[r.Role] = need[r.Role].Add(r.Claim)
		if !a.executors[r.Role] && !c.cfg.Executor.IsZero() {
			execRoles[r.Role] = true
		}
	}
	for role := range execRoles {
		need[role] = need[role].Add(c.cfg.Executor)
	}

	chosen := c.chooseOffersLocked(a, need)
	if chosen == nil {
		// The invariant says this cannot happen; losing the batch is the
		// safe answer if it does.
		for _, r := range batch {
			err := fmt.Errorf("%w: offers of agent %s (%s) do not hold the batch", ErrLost, a.hostname, a.id)
			l.Failed[r.ID] = err
			c.releaseLocked(r, err)
		}
		klog.ErrorS(nil, "Offer cache invariant broken: reservations exceed offers", "agent", a.id, "need", need)
		return l, nil
	}

	var pool mesos.Resources
	for _, o := range chosen {
		l.OfferIDs = append(l.OfferIDs, o.id)
		rs, err := decodeResources(o.resources)
		if err != nil {
			return nil, fmt.Errorf("offer %s of agent %s: %w", o.id, a.id, err)
		}
		pool = append(pool, rs...)
	}
	for _, role := range sortedKeys(execRoles) {
		// One shape for the executor's resources, whatever the offers
		// look like: its ExecutorInfo must not depend on them.
		taken, rest, err := podresources.TakeUnreserved(pool, role, c.cfg.Executor)
		if err != nil {
			for _, r := range batch {
				err := fmt.Errorf("%w: the k8sm executor must start on agent %s (%s) and its resources (%s) must come from unreserved resources allocated to role %s: %v",
					ErrLost, a.hostname, a.id, c.cfg.Executor, role, err)
				l.Failed[r.ID] = err
				c.releaseLocked(r, err)
			}
			return l, nil
		}
		if l.Executor == nil {
			l.Executor = map[string]mesos.Resources{}
		}
		l.Executor[role] = taken
		pool = rest
	}
	for _, r := range batch {
		taken, rest, err := podresources.Take(pool, r.Role, r.Claim)
		if err != nil {
			return nil, fmt.Errorf("cutting resources of reservation %s on agent %s: %w", r.ID, a.id, err)
		}
		l.Tasks = append(l.Tasks, Task{Reservation: *r, Resources: taken})
		pool = rest
	}
	l.Remainder = pool

	// Commit: nothing above changed the cache.
	for _, r := range batch {
		a.reserved[r.Role] = a.reserved[r.Role].Subtract(r.Claim)
		if a.reserved[r.Role].IsZero() {
			delete(a.reserved, r.Role)
		}
		c.endLocked(r, fmt.Errorf("%w: reservation %s of pod %s/%s was launched on %s", ErrLaunched, r.ID, r.Pod.Namespace, r.Pod.Name, a.hostname))
	}
	for role := range execRoles {
		a.setExecutor(role)
	}
	c.removeOffersLocked(a, l.OfferIDs)
	l.Lost = c.rebalanceLocked(a)
	for _, r := range l.Lost {
		c.ended[r.ID] = ended{err: fmt.Errorf("%w: reservation %s of pod %s/%s: the offers of agent %s holding it were accepted for the launch of other pods before it asked to launch; schedule the pod again",
			ErrLost, r.ID, r.Pod.Namespace, r.Pod.Name, a.hostname), at: now}
	}
	c.changedLocked(a)
	l.Version = a.version
	klog.V(4).InfoS("Took offers for launch", "agent", a.id, "node", a.hostname, "offers", l.OfferIDs, "tasks", len(l.Tasks), "lost", len(l.Lost))
	return l, nil
}

// chooseOffersLocked picks offers, oldest first, until they hold need; nil if
// all of them do not. An offer is only taken if it has resources of a role
// that is still short, so offers of other roles stay for other pods.
func (c *Cache) chooseOffersLocked(a *agent, need podresources.ByRole) []*offer {
	all := slices.Clone(a.offers)
	sort.Slice(all, func(i, j int) bool {
		if !all[i].received.Equal(all[j].received) {
			return all[i].received.Before(all[j].received)
		}
		return all[i].id < all[j].id
	})
	have := podresources.ByRole{}
	short := func() []string {
		var roles []string
		for role, n := range need {
			if !have[role].Contains(n) {
				roles = append(roles, role)
			}
		}
		return roles
	}
	var chosen []*offer
	for _, o := range all {
		missing := short()
		if len(missing) == 0 {
			break
		}
		useful := false
		for _, role := range missing {
			r := o.byRole.get(role)
			if !r.IsZero() && contributes(have[role], need[role], r) {
				useful = true
			}
		}
		if !useful {
			continue
		}
		chosen = append(chosen, o)
		for _, e := range o.byRole {
			have[e.role] = have[e.role].Add(e.res)
		}
	}
	if len(short()) > 0 {
		return nil
	}
	return chosen
}

// contributes reports whether adding r to have gets closer to need.
func contributes(have, need, r podresources.Resources) bool {
	short := need.Subtract(have)
	if (short.CPUs > 0 && r.CPUs > 0) || (short.MemMB > 0 && r.MemMB > 0) ||
		(short.DiskMB > 0 && r.DiskMB > 0) || (short.GPUs > 0 && r.GPUs > 0) {
		return true
	}
	missingPorts := need.Ports.Minus(have.Ports)
	return len(missingPorts.Intersect(r.Ports)) > 0
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
