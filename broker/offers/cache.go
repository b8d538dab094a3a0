package offers

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// Config tunes the cache. Zero fields take the defaults documented on them.
type Config struct {
	// Clock is injectable for tests; default the real clock.
	Clock clock.WithTicker
	// Executor is what the k8sm executor itself needs. It is charged once per
	// agent and role while no executor runs there: the view subtracts it, and
	// the first launch carries it in the ExecutorInfo.
	Executor podresources.Resources
	// DefaultTTL applies to a Reserve without a TTL (default 30s); MaxTTL caps
	// any TTL (default 5m) so that a crashed scheduler cannot pin offers.
	DefaultTTL, MaxTTL time.Duration
	// DeclineAfter is how long an offer no reservation needs is held before
	// Declinable hands it back (default 5s). Holding briefly lets pods that
	// are being scheduled use it; holding long starves other frameworks.
	DeclineAfter time.Duration
	// HoldWhilePending is how long, counted from its arrival, an offer that a
	// pending pod could use (SetPendingDemands) is kept before Declinable
	// hands it back anyway. Zero (or anything not beyond DeclineAfter) keeps
	// no offer past DeclineAfter: the behaviour without pending pods. Holding
	// spares the DECLINE and re-offer of a whole allocation every
	// DeclineAfter while a burst of pods is placed; the bound keeps the
	// resources from other frameworks only so long.
	HoldWhilePending time.Duration
	// RefuseSeconds is the filter sent with declines (default 5): how long
	// Mesos should not re-offer the declined resources to the framework.
	RefuseSeconds float64
	// EndedTTL is how long ended reservations are remembered so that a late
	// Launch learns why its reservation ended (default 10m).
	EndedTTL time.Duration
	// PodDefaults are charged for the cpus and mem a pod does not request
	// (default podresources.DefaultPodScalars): a Mesos task needs both.
	PodDefaults podresources.Scalars
	// WatchBuffer is the number of events a watcher may lag behind before it
	// is resynced with a fresh snapshot (default 1024).
	WatchBuffer int
}

func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.PodDefaults.CPUs <= 0 {
		c.PodDefaults.CPUs = podresources.DefaultPodCPUs
	}
	if c.PodDefaults.MemMB <= 0 {
		c.PodDefaults.MemMB = podresources.DefaultPodMemMB
	}
	if c.DefaultTTL <= 0 {
		c.DefaultTTL = 30 * time.Second
	}
	if c.MaxTTL <= 0 {
		c.MaxTTL = 5 * time.Minute
	}
	if c.DeclineAfter <= 0 {
		c.DeclineAfter = 5 * time.Second
	}
	if c.RefuseSeconds <= 0 {
		c.RefuseSeconds = 5
	}
	if c.EndedTTL <= 0 {
		c.EndedTTL = 10 * time.Minute
	}
	if c.WatchBuffer <= 0 {
		c.WatchBuffer = 1024
	}
	return c
}

// Cache is the offer cache. Create it with New.
type Cache struct {
	cfg Config

	mu           sync.Mutex
	version      uint64
	agents       map[string]*agent
	byHost       map[string]*agent
	offerAgent   map[string]*agent
	reservations map[string]*Reservation
	byPod        map[types.UID]*Reservation
	ended        map[string]ended
	watchers     map[*Watcher]struct{}
	attrs        attrSets
	seq          uint64
	idPrefix     string
	// pending are what the pods waiting for resources need, reduced
	// (pending.go): an offer one of them could use is held, not declined.
	pending []podresources.Demand
	// onEnded hears of every reservation that ends (OnReservationEnded).
	onEnded func(agentID string)
}

type ended struct {
	err error
	at  time.Time
}

// agent is the record of one agent (records.go says why it is compact).
type agent struct {
	id, hostname string
	// attributes is shared with the agents of the same attribute set (the
	// cache's attrSets, under attrKey) and never modified.
	attributes map[string]string
	attrKey    string
	offers     []*offer
	offered    roleSums
	capacity   roleSums
	// reserved, reservations and executors stay nil while empty: most
	// agents hold no reservation most of the time.
	reserved     podresources.ByRole
	reservations map[string]*Reservation
	executors    map[string]bool
	// draining says why the agent takes no new pods ("" when it does).
	draining string
	version  uint64
}

// offer is the record of one outstanding offer: what Take, Declinable and
// the views need of it, and nothing of the decoded mesos.Offer.
type offer struct {
	id string
	// resources are the offered resources as encodeResources keeps them, for
	// the ACCEPT that uses the offer.
	resources []byte
	byRole    roleSums
	received  time.Time
	usable    bool
}

// New returns an empty cache.
func New(cfg Config) *Cache {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Cache{
		cfg:          cfg.withDefaults(),
		agents:       map[string]*agent{},
		byHost:       map[string]*agent{},
		offerAgent:   map[string]*agent{},
		reservations: map[string]*Reservation{},
		byPod:        map[types.UID]*Reservation{},
		ended:        map[string]ended{},
		watchers:     map[*Watcher]struct{}{},
		attrs:        attrSets{},
		// Reservation ids are unique across broker restarts, so a plugin that
		// kept one from the previous leader gets "unknown", never a stranger's.
		idPrefix: hex.EncodeToString(b[:]),
	}
}

// AgentView is an immutable copy of one agent's state, as watchers see it.
type AgentView struct {
	ID         string
	Hostname   string
	Attributes map[string]string // shared, never modified: do not modify
	// Available is what a new pod may claim, by role.
	Available podresources.ByRole
	// Capacity is the most the agent has offered, by role.
	Capacity podresources.ByRole
	// ExecutorRoles are the roles for which the k8sm executor runs.
	ExecutorRoles []string
	// Draining says why the agent takes no new pods ("" when it does).
	Draining string
	Version  uint64
}

// Add records new offers. An offer id seen before is ignored, so redelivered
// OFFERS events are harmless.
//
// An allocation brings an offer from (nearly) every agent in one event. What
// can be worked out of an offer alone (its summary, its encoded resources,
// its attributes) is done before taking the lock, and the offers go in a few
// agents at a time, each batch under the lock on its own: a whole event
// under the lock held every Reserve, Get and Take (the scheduler's and the
// launcher's calls) for as long as it took.
func (c *Cache) Add(offers ...mesos.Offer) {
	b := c.NewBatch()
	b.prepared = make([]preparedOffer, 0, len(offers))
	for i := range offers {
		b.Put(&offers[i])
	}
	c.AddBatch(b)
}

// Batch is the offers of one OFFERS event on their way into the cache, taken
// one at a time as they are decoded from the event stream and added together
// by AddBatch. Putting an offer changes nothing in the cache: an event whose
// end turns out malformed is dropped with its batch and leaves no offer of
// it behind. It holds only the compact records the cache keeps, so the
// decoded offers (~1.3 KiB each at 10,000 agents) are garbage as soon as
// each is put.
type Batch struct {
	now      time.Time
	prepared []preparedOffer
}

// NewBatch starts an empty batch; its offers arrive now.
func (c *Cache) NewBatch() *Batch { return &Batch{now: c.cfg.Clock.Now()} }

// Put prepares o for the cache; the batch keeps nothing of o itself.
func (b *Batch) Put(o *mesos.Offer) { b.prepared = append(b.prepared, prepareOffer(o, b.now)) }

// Len is the number of offers put.
func (b *Batch) Len() int { return len(b.prepared) }

// AddBatch records the offers of b as Add does; b is empty afterwards.
func (c *Cache) AddBatch(b *Batch) {
	prepared := b.prepared
	b.prepared = nil
	for len(prepared) > 0 {
		n := min(len(prepared), addBatch)
		c.addPrepared(prepared[:n])
		prepared = prepared[n:]
	}
}

// addBatch is how many offers go in under one hold of the lock: enough that
// the lock is not taken per offer, few enough that a Reserve waits for tens
// of microseconds, not for a whole allocation.
const addBatch = 32

// preparedOffer is an offer's record and what it says of its agent, made
// without the cache's state.
type preparedOffer struct {
	agentID, hostname string
	attributes        map[string]string
	o                 *offer
}

func prepareOffer(o *mesos.Offer, now time.Time) preparedOffer {
	byRole := compactRoles(podresources.FromMesos(o.Resources))
	raw, err := encodeResources(o.Resources)
	if err != nil {
		// Kept without resources, so Declinable hands it back at once.
		klog.ErrorS(err, "Offer kept for declining only", "offer", o.ID.Value, "agent", o.AgentID.Value)
		byRole = nil
	}
	return preparedOffer{
		agentID:    o.AgentID.Value,
		hostname:   o.Hostname,
		attributes: renderAttributes(o.Attributes),
		o:          &offer{id: o.ID.Value, resources: raw, byRole: byRole, received: now, usable: !byRole.isZero()},
	}
}

func (c *Cache) addPrepared(batch []preparedOffer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Agents in the order of their first offer, each announced once.
	var touched []*agent
	for i := range batch {
		p := &batch[i]
		if _, dup := c.offerAgent[p.o.id]; dup {
			continue
		}
		a := c.agentLocked(p.agentID, p.hostname)
		c.attrs.use(a, p.attributes)
		a.offers = append(a.offers, p.o)
		c.offerAgent[p.o.id] = a
		for _, e := range p.o.byRole {
			offered := a.offered.get(e.role).Add(e.res)
			a.offered = a.offered.set(e.role, offered)
			a.capacity = a.capacity.set(e.role, highWater(a.capacity.get(e.role), offered))
		}
		if !slices.Contains(touched, a) {
			touched = append(touched, a)
		}
	}
	for _, a := range touched {
		c.changedLocked(a)
	}
}

func (c *Cache) agentLocked(id, hostname string) *agent {
	a, ok := c.agents[id]
	if !ok {
		a = &agent{id: id}
		c.agents[id] = a
	}
	if hostname != "" && a.hostname != hostname {
		if old := c.byHost[a.hostname]; old == a {
			delete(c.byHost, a.hostname)
		}
		a.hostname = hostname
	}
	// An agent that re-registers under a new id keeps its hostname; the
	// newest one is the Node's agent.
	if a.hostname != "" {
		c.byHost[a.hostname] = a
	}
	return a
}

// Rescind forgets an offer Mesos took back and returns the reservations that
// lost their resources with it.
func (c *Cache) Rescind(offerID string) []Reservation {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.offerAgent[offerID]
	if !ok {
		return nil
	}
	c.removeOffersLocked(a, []string{offerID})
	lost := c.rebalanceLocked(a)
	c.changedLocked(a)
	return lost
}

// RemoveAgent forgets an agent Mesos lost or removed, with its offers and
// reservations (returned as lost).
func (c *Cache) RemoveAgent(agentID string) []Reservation {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.agents[agentID]
	if !ok {
		return nil
	}
	var lost []Reservation
	for _, r := range sortedReservations(a) {
		lost = append(lost, *r)
		c.endLocked(r, fmt.Errorf("%w: agent %s (%s) is gone", ErrLost, a.hostname, a.id))
	}
	for _, o := range a.offers {
		delete(c.offerAgent, o.id)
	}
	c.attrs.release(a)
	delete(c.agents, a.id)
	if c.byHost[a.hostname] == a {
		delete(c.byHost, a.hostname)
	}
	c.version++
	c.publishLocked(Event{Type: EventRemoved, Version: c.version, Removed: AgentRef{ID: a.id, Hostname: a.hostname}})
	return lost
}

// SetExecutorRunning records whether the k8sm executor runs on the agent for
// role. While it does not, the executor's resources are held back from the
// view and charged to the next launch. Take sets it when it launches the
// executor; the Mesos side clears it when the executor ends.
func (c *Cache) SetExecutorRunning(agentID, role string, running bool) []Reservation {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.agents[agentID]
	if !ok {
		a = c.agentLocked(agentID, "")
	}
	if a.executors[role] == running {
		return nil
	}
	if running {
		a.setExecutor(role)
	} else {
		delete(a.executors, role)
	}
	lost := c.rebalanceLocked(a)
	c.changedLocked(a)
	return lost
}

// SetDraining stops (reason != "") or resumes (reason == "") new pods on an
// agent: while it drains its view offers nothing, Reserve fails there and so
// does Take of the reservations it holds. It reports whether that changed.
func (c *Cache) SetDraining(agentID, reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.agents[agentID]
	if !ok {
		a = c.agentLocked(agentID, "")
	}
	if (a.draining != "") == (reason != "") {
		a.draining = reason
		return false
	}
	a.draining = reason
	c.changedLocked(a)
	return true
}

// Agent returns the current view of one agent.
func (c *Cache) Agent(agentID string) (AgentView, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.agents[agentID]
	if !ok {
		return AgentView{}, false
	}
	return c.viewLocked(a), true
}

// AgentHostname is the agent's hostname. It builds no view: the broker asks
// it for every task status.
func (c *Cache) AgentHostname(agentID string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.agents[agentID]
	if !ok {
		return "", false
	}
	return a.hostname, true
}

// AgentCapacity is the most the agent has offered, its roles summed (the
// Total of its view's Capacity). It builds no view: the node mirror asks it
// for every offer.
func (c *Cache) AgentCapacity(agentID string) (podresources.Resources, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.agents[agentID]
	if !ok {
		return podresources.Resources{}, false
	}
	var total podresources.Resources
	for _, e := range a.capacity {
		total = total.Add(e.res)
	}
	return total, true
}

// Snapshot returns every agent's view, sorted by hostname, and the version.
func (c *Cache) Snapshot() ([]AgentView, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snapshotLocked().Views(), c.version
}

// Snapshot is every agent's state at one version, in hostname order. It holds
// compact copies that share what the cache never modifies and makes each
// AgentView when asked (View): a watcher's snapshot of 10,000 agents is sent
// in chunks and never needs 10,000 views at once.
type Snapshot struct {
	agents []agentCopy
}

// Len is the number of agents.
func (s Snapshot) Len() int { return len(s.agents) }

// View is the i-th agent's view.
func (s Snapshot) View(i int) AgentView { return s.agents[i].view() }

// Views are all of them.
func (s Snapshot) Views() []AgentView {
	out := make([]AgentView, len(s.agents))
	for i := range s.agents {
		out[i] = s.agents[i].view()
	}
	return out
}

// agentCopy is an agent's state as a view shows it.
type agentCopy struct {
	id, hostname  string
	attributes    map[string]string
	available     roleSums
	capacity      roleSums
	executorRoles []string
	draining      string
	version       uint64
}

func (a *agentCopy) view() AgentView {
	avail := make(podresources.ByRole, len(a.available))
	for _, e := range a.available {
		r := e.res
		r.CPUs, r.MemMB, r.DiskMB, r.GPUs = max(r.CPUs, 0), max(r.MemMB, 0), max(r.DiskMB, 0), max(r.GPUs, 0)
		avail[e.role] = r
	}
	return AgentView{
		ID:            a.id,
		Hostname:      a.hostname,
		Attributes:    a.attributes,
		Available:     avail,
		Capacity:      a.capacity.byRole(),
		ExecutorRoles: a.executorRoles,
		Draining:      a.draining,
		Version:       a.version,
	}
}

func (c *Cache) snapshotLocked() Snapshot {
	out := make([]agentCopy, 0, len(c.agents))
	for _, a := range c.agents {
		out = append(out, c.copyLocked(a))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].hostname != out[j].hostname {
			return out[i].hostname < out[j].hostname
		}
		return out[i].id < out[j].id
	})
	return Snapshot{agents: out}
}

// executorCharge is what role still owes for the executor on a.
func (c *Cache) executorCharge(a *agent, role string) podresources.Resources {
	if a.executors[role] {
		return podresources.Resources{}
	}
	return c.cfg.Executor
}

// availableLocked is offered minus reservations minus the executor charge, by
// role. Scalars may come out negative when the executor does not fit; Fit
// then fails, which is right: no pod can start there.
func (c *Cache) availableLocked(a *agent) podresources.ByRole {
	return c.availableSumsLocked(a).byRole()
}

func (c *Cache) availableSumsLocked(a *agent) roleSums {
	if a.draining != "" {
		return nil
	}
	out := make(roleSums, 0, len(a.offered))
	for _, e := range a.offered {
		out = append(out, roleSum{role: e.role, res: e.res.Subtract(a.reserved[e.role]).Subtract(c.executorCharge(a, e.role))})
	}
	return out
}

// copyLocked is a's state for a view; capacity and attributes are shared
// (never modified in place).
func (c *Cache) copyLocked(a *agent) agentCopy {
	var roles []string
	for role := range a.executors {
		roles = append(roles, role)
	}
	sort.Strings(roles)
	return agentCopy{
		id:            a.id,
		hostname:      a.hostname,
		attributes:    a.attributes,
		available:     c.availableSumsLocked(a),
		capacity:      a.capacity,
		executorRoles: roles,
		draining:      a.draining,
		version:       a.version,
	}
}

func (c *Cache) viewLocked(a *agent) AgentView {
	cp := c.copyLocked(a)
	return cp.view()
}

func (c *Cache) changedLocked(a *agent) {
	c.version++
	a.version = c.version
	if len(c.watchers) == 0 {
		return
	}
	c.publishLocked(Event{Type: EventUpdated, Version: c.version, Agent: c.viewLocked(a)})
}

func (c *Cache) removeOffersLocked(a *agent, ids []string) {
	kept := a.offers[:0]
	for _, o := range a.offers {
		if slices.Contains(ids, o.id) {
			delete(c.offerAgent, o.id)
			continue
		}
		kept = append(kept, o)
	}
	clear(a.offers[len(kept):])
	a.offers = kept
	// Recomputed rather than subtracted: port ranges of two offers may touch,
	// and a fresh sum cannot carry an earlier mistake forward.
	offered := podresources.ByRole{}
	for _, o := range a.offers {
		for _, e := range o.byRole {
			offered[e.role] = offered[e.role].Add(e.res)
		}
	}
	a.offered = compactRoles(offered)
}

// rebalanceLocked restores the invariant after offered resources shrank or
// the executor charge grew: reservations are re-admitted oldest first and
// those that no longer fit are lost.
func (c *Cache) rebalanceLocked(a *agent) []Reservation {
	ok := true
	for role := range rolesInUse(a) {
		if !a.offered.get(role).Contains(a.reserved[role].Add(c.executorCharge(a, role))) {
			ok = false
			break
		}
	}
	if ok {
		return nil
	}
	var lost []Reservation
	kept := podresources.ByRole{}
	for _, r := range sortedReservations(a) {
		want := kept[r.Role].Add(r.Claim)
		if a.offered.get(r.Role).Contains(want.Add(c.executorCharge(a, r.Role))) {
			kept[r.Role] = want
			continue
		}
		lost = append(lost, *r)
		c.endLocked(r, fmt.Errorf("%w: the offers of agent %s (%s) no longer hold it", ErrLost, a.hostname, a.id))
	}
	a.reserved = kept
	return lost
}

// rolesInUse are the roles of a's live reservations. A reservation that
// claims nothing still needs its role's executor charge, so a.reserved (which
// drops zero sums) is not the same set.
func rolesInUse(a *agent) map[string]bool {
	roles := make(map[string]bool, 2)
	for _, r := range a.reservations {
		roles[r.Role] = true
	}
	return roles
}

func sortedReservations(a *agent) []*Reservation {
	rs := make([]*Reservation, 0, len(a.reservations))
	for _, r := range a.reservations {
		rs = append(rs, r)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].seq < rs[j].seq })
	return rs
}

// endLocked removes a live reservation and remembers why it ended. It does
// not touch a.reserved: callers either subtract the claim or rebuild the sum.
func (c *Cache) endLocked(r *Reservation, why error) {
	delete(c.reservations, r.ID)
	if c.byPod[r.Pod.UID] == r {
		delete(c.byPod, r.Pod.UID)
	}
	if a, ok := c.agents[r.AgentID]; ok {
		delete(a.reservations, r.ID)
	}
	c.ended[r.ID] = ended{err: why, at: c.cfg.Clock.Now()}
	klog.V(4).InfoS("Reservation ended", "reservation", r.ID, "pod", klog.KRef(r.Pod.Namespace, r.Pod.Name), "agent", r.AgentID, "reason", why)
	if c.onEnded != nil {
		c.onEnded(r.AgentID)
	}
}

// OnReservationEnded has fn called with the agent of every reservation that
// ends, however it ends (launched, released, expired, lost), so that a
// launch waiting for the agent's other reservations need not wait longer
// than they live. fn runs with the cache locked: it must neither block nor
// call the cache. Set it before the cache is used.
func (c *Cache) OnReservationEnded(fn func(agentID string)) {
	c.mu.Lock()
	c.onEnded = fn
	c.mu.Unlock()
}

func renderAttributes(attrs []mesos.Attribute) map[string]string {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string]string, len(attrs))
	for _, at := range attrs {
		switch {
		case at.Text != nil:
			out[at.Name] = at.Text.Value
		case at.Scalar != nil:
			out[at.Name] = strconv.FormatFloat(at.Scalar.Value, 'f', -1, 64)
		case at.Ranges != nil:
			spans := make([]podresources.Range, len(at.Ranges.Range))
			for i, r := range at.Ranges.Range {
				spans[i] = podresources.Range{Begin: r.Begin, End: r.End}
			}
			out[at.Name] = podresources.NewRanges(spans...).String()
		case at.Set != nil:
			items := append([]string(nil), at.Set.Item...)
			sort.Strings(items)
			out[at.Name] = "{" + strings.Join(items, ",") + "}"
		}
	}
	return out
}

// setExecutor notes that the executor of role runs on a.
func (a *agent) setExecutor(role string) {
	if a.executors == nil {
		a.executors = map[string]bool{}
	}
	a.executors[role] = true
}

// addReservation adds a live reservation to a's records.
func (a *agent) addReservation(r *Reservation) {
	if a.reservations == nil {
		a.reservations = map[string]*Reservation{}
	}
	if a.reserved == nil {
		a.reserved = podresources.ByRole{}
	}
	a.reservations[r.ID] = r
	a.reserved[r.Role] = a.reserved[r.Role].Add(r.Claim)
}

func highWater(a, b podresources.Resources) podresources.Resources {
	return podresources.Resources{Scalars: a.Scalars.Max(b.Scalars), Ports: a.Ports.Union(b.Ports)}
}
