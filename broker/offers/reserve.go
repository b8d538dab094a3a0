package offers

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// PodRef identifies a pod; the UID is what counts.
type PodRef struct {
	UID       types.UID
	Namespace string
	Name      string
}

// ReserveRequest asks for resources on one agent for one pod.
type ReserveRequest struct {
	Pod PodRef
	// AgentID or NodeName (the agent's hostname) names the agent; with both,
	// they must agree.
	AgentID  string
	NodeName string
	Demand   podresources.Demand
	// TTL of the claim; zero means Config.DefaultTTL, longer than
	// Config.MaxTTL is capped.
	TTL time.Duration
	// Epoch is the Cache.Epoch of the view the claim was made against;
	// another one is refused with ErrStaleEpoch, "" skips the check.
	Epoch string
}

// Reservation is a claim of concrete resources on one agent for one pod.
type Reservation struct {
	ID       string
	Pod      PodRef
	AgentID  string
	Hostname string
	// Role the resources come from.
	Role string
	// Claim holds the scalars and the concrete ports (fixed and chosen).
	Claim podresources.Resources
	// WildcardPorts are the ports chosen for the pod's wildcard ports, in the
	// pod's order (podresources.WildcardPortsOf).
	WildcardPorts []uint64
	Created       time.Time
	Expires       time.Time
	// AgentVersion is the agent's view version right after Reserve made
	// the claim: views of that version or later include it.
	AgentVersion uint64

	seq uint64
}

// Reserve claims the demand on the agent atomically: of two Reserves racing
// for the last resources exactly one succeeds. A pod holds at most one
// reservation; reserving again releases the earlier one first (the scheduler
// only reserves again after it gave up on the previous node).
func (c *Cache) Reserve(req ReserveRequest) (Reservation, error) {
	if req.Pod.UID == "" {
		return Reservation{}, fmt.Errorf("%w: pod uid is empty", ErrInvalid)
	}
	if err := req.Demand.Validate(); err != nil {
		return Reservation{}, fmt.Errorf("%w: pod %s/%s: %v", ErrInvalid, req.Pod.Namespace, req.Pod.Name, err)
	}
	if req.TTL < 0 {
		return Reservation{}, fmt.Errorf("%w: negative TTL %s", ErrInvalid, req.TTL)
	}
	if req.Epoch != "" && req.Epoch != c.idPrefix {
		return Reservation{}, fmt.Errorf("%w: the claim was made against the offers of broker epoch %s, this broker's epoch is %s (it restarted since): the scheduler resyncs its offer view and tries again", ErrStaleEpoch, req.Epoch, c.idPrefix)
	}
	// The plugin sends what the pod requests; what it did not request is
	// charged here, in the one place that builds tasks from claims.
	req.Demand = req.Demand.WithDefaults(c.cfg.PodDefaults)
	ttl := req.TTL
	if ttl == 0 {
		ttl = c.cfg.DefaultTTL
	}
	ttl = min(ttl, c.cfg.MaxTTL)
	now := c.cfg.Clock.Now()

	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.resolveLocked(req.AgentID, req.NodeName)
	if err != nil {
		return Reservation{}, err
	}
	if old := c.byPod[req.Pod.UID]; old != nil {
		c.releaseLocked(old, fmt.Errorf("%w: pod %s/%s reserved again", ErrReleased, req.Pod.Namespace, req.Pod.Name))
	}
	avail := c.availableLocked(a)
	role, short := avail.Fit(req.Demand)
	if !short.Fits() {
		return Reservation{}, &InsufficientError{AgentID: a.id, Hostname: a.hostname, Short: short}
	}
	claim, wild, ok := avail[role].Claim(req.Demand)
	if !ok {
		// Fit and Claim agree by construction; this guards the invariant.
		return Reservation{}, fmt.Errorf("claiming %s on agent %s: fit but could not be claimed", req.Demand, a.id)
	}
	c.seq++
	r := &Reservation{
		ID:            c.idPrefix + "-" + strconv.FormatUint(c.seq, 10),
		Pod:           req.Pod,
		AgentID:       a.id,
		Hostname:      a.hostname,
		Role:          role,
		Claim:         claim,
		WildcardPorts: wild,
		Created:       now,
		Expires:       now.Add(ttl),
		seq:           c.seq,
	}
	c.reservations[r.ID] = r
	c.byPod[r.Pod.UID] = r
	a.addReservation(r)
	c.changedLocked(a)
	r.AgentVersion = a.version
	klog.V(4).InfoS("Reserved", "reservation", r.ID, "pod", klog.KRef(r.Pod.Namespace, r.Pod.Name), "agent", a.id, "node", a.hostname, "role", role, "claim", claim.String(), "ttl", ttl)
	return *r, nil
}

// Epoch identifies this cache, new at every broker start: resource versions
// and reservation ids mean something only within one epoch.
func (c *Cache) Epoch() string { return c.idPrefix }

func (c *Cache) resolveLocked(agentID, nodeName string) (*agent, error) {
	switch {
	case agentID != "":
		a, ok := c.agents[agentID]
		if !ok {
			return nil, fmt.Errorf("%w: no agent %q has offered resources to this framework", ErrUnknownAgent, agentID)
		}
		if nodeName != "" && a.hostname != nodeName {
			return nil, fmt.Errorf("%w: agent %s is node %q, not %q", ErrInvalid, agentID, a.hostname, nodeName)
		}
		return a, nil
	case nodeName != "":
		a, ok := c.byHost[nodeName]
		if !ok {
			return nil, fmt.Errorf("%w: node %q is not a Mesos agent that has offered resources to this framework", ErrUnknownAgent, nodeName)
		}
		return a, nil
	}
	return nil, fmt.Errorf("%w: neither node name nor agent id given", ErrInvalid)
}

// releaseLocked ends a live reservation and gives its claim back.
func (c *Cache) releaseLocked(r *Reservation, why error) {
	if a, ok := c.agents[r.AgentID]; ok {
		a.reserved[r.Role] = a.reserved[r.Role].Subtract(r.Claim)
		if a.reserved[r.Role].IsZero() {
			delete(a.reserved, r.Role)
		}
		c.endLocked(r, why)
		c.changedLocked(a)
		return
	}
	c.endLocked(r, why)
}

// Unreserve releases a reservation by id, or when id is empty the one held
// by pod uid. It reports whether there was one to release.
func (c *Cache) Unreserve(id string, uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	var r *Reservation
	if id != "" {
		r = c.reservations[id]
		if r != nil && uid != "" && r.Pod.UID != uid {
			// A caller that names both must name one reservation.
			return false
		}
	} else if uid != "" {
		r = c.byPod[uid]
	}
	if r == nil {
		return false
	}
	c.releaseLocked(r, fmt.Errorf("%w by the scheduler", ErrReleased))
	return true
}

// Get returns a live reservation, or an error saying why there is none:
// ErrExpired, ErrLost, ErrReleased or ErrLaunched for one that ended recently,
// ErrUnknownReservation otherwise.
func (c *Cache) Get(id string) (Reservation, error) {
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	r, err := c.liveLocked(id, now)
	if err != nil {
		return Reservation{}, err
	}
	return *r, nil
}

func (c *Cache) liveLocked(id string, now time.Time) (*Reservation, error) {
	r, ok := c.reservations[id]
	if !ok {
		if e, ok := c.ended[id]; ok {
			return nil, e.err
		}
		return nil, fmt.Errorf("%w %q: the broker never made it or forgot it (a broker restart forgets every reservation)", ErrUnknownReservation, id)
	}
	if !now.Before(r.Expires) {
		err := expiredErr(r)
		c.releaseLocked(r, err)
		return nil, err
	}
	return r, nil
}

func expiredErr(r *Reservation) error {
	return fmt.Errorf("%w: reservation %s of pod %s/%s on %s expired at %s", ErrExpired, r.ID, r.Pod.Namespace, r.Pod.Name, r.Hostname, r.Expires.UTC().Format(time.RFC3339))
}

// Expire ends every reservation whose TTL ran out and forgets reservations
// that ended more than Config.EndedTTL ago. It returns the expired ones. The
// broker calls it periodically (Run does); Get and Take also notice expiry.
func (c *Cache) Expire() []Reservation {
	now := c.cfg.Clock.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Reservation
	for _, r := range c.reservations {
		if !now.Before(r.Expires) {
			out = append(out, *r)
			c.releaseLocked(r, expiredErr(r))
		}
	}
	for id, e := range c.ended {
		if now.Sub(e.at) > c.cfg.EndedTTL {
			delete(c.ended, id)
		}
	}
	return out
}

// IsEnded reports whether err says a reservation no longer exists for a
// reason the caller cannot fix by retrying the same call.
func IsEnded(err error) bool {
	return errors.Is(err, ErrExpired) || errors.Is(err, ErrLost) || errors.Is(err, ErrReleased) ||
		errors.Is(err, ErrLaunched) || errors.Is(err, ErrUnknownReservation)
}

// Pending is the number of live reservations on the agent. The launcher's
// batching window closes early once every one of them has asked to launch.
func (c *Cache) Pending(agentID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.agents[agentID]; ok {
		return len(a.reservations)
	}
	return 0
}
