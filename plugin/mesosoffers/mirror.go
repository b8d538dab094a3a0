package mesosoffers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// agent is the plugin's copy of one agent's offers. It is immutable once in
// the mirror: updates replace it, so readers may keep a pointer without a lock.
type agent struct {
	id, hostname string
	attributes   map[string]string
	available    podresources.ByRole
	capacity     podresources.ByRole
	version      uint64
	// sorted is available by role in the roles' order (sortedRoles).
	sorted []roleResources
	// launching: a launch the plugin sent takes the agent's offers, and
	// the broker's view does not show it yet; available is empty
	// (launching.go).
	launching bool
}

type roleResources struct {
	role string
	res  podresources.Resources
}

func sortedRoles(b podresources.ByRole) []roleResources {
	out := make([]roleResources, 0, len(b))
	for _, role := range b.Roles() {
		out = append(out, roleResources{role, b[role]})
	}
	return out
}

// holds is whether the agent's available resources hold d, as
// available.Holds answers, without a map in the way: Filter asks it for
// every node of every pod.
func (a *agent) holds(d podresources.Demand) bool {
	for i := range a.sorted {
		if d.AllowsRole(a.sorted[i].role) && a.sorted[i].res.Holds(d) {
			return true
		}
	}
	return false
}

// mirror is a local copy of the broker's offer view, fed by WatchOffers, like
// an informer's store. Filter reads it for every node, so reads must be cheap
// and never wait on the network.
//
// On top of the broker's view lies an overlay of the plugin's own claims
// (claims.go): agents holds the broker's view less the claims it does not
// show yet, which is what Filter reads.
type mirror struct {
	mu     sync.RWMutex
	synced bool
	// lastErr says why the view is not synced, for the pods failed meanwhile.
	lastErr error
	// epoch is the broker's (Snapshot.epoch) the view came from.
	epoch  string
	base   map[string]*agent // the broker's view, by hostname (= Node name)
	agents map[string]*agent // base less the local claims, by hostname
	// slots publishes agents to get without the lock (hostSlots): one
	// slot per host ever seen in this view, holding the host's entry of
	// agents (nil when it has none). Filter reads it for every node, from
	// the scheduler's parallel workers; under the lock they all stalled
	// whenever the offer watch waited for it to apply a change.
	slots hostSlots
	// bulk holds publishing back while a snapshot rebuilds the view, which
	// is then published whole.
	bulk   bool
	byID   map[string]string // agent id -> hostname
	claims overlay
	// launches are the launches in flight the broker's view does not show
	// yet (launching.go).
	launches launchMarks
	// fits indexes agents by the demand shapes they hold (fitIndex).
	fits fitIndex
	// reset hears, outside the lock, that the overlay was dropped (the
	// watch ended or the broker restarted) and why.
	reset func(error)
}

func newMirror(reset func(error)) *mirror {
	m := &mirror{
		base:     map[string]*agent{},
		agents:   map[string]*agent{},
		byID:     map[string]string{},
		claims:   newOverlay(),
		launches: launchMarks{},
		fits:     newFitIndex(),
		lastErr:  errors.New("the offer watch has not started yet"),
		reset:    reset,
	}
	m.publishAllLocked()
	return m
}

// publishAllLocked publishes agents whole, replacing every slot.
func (m *mirror) publishAllLocked() { m.slots.reset(m.agents) }

// publishLocked makes a host's entry of agents the one get returns.
func (m *mirror) publishLocked(host string, a *agent) {
	if m.bulk {
		return
	}
	if slot := m.slots.slotToWrite(host); slot != nil {
		slot.Store(a)
		return
	}
	if a != nil {
		m.slots.add(host, a)
	}
}

// state returns whether the view is usable and, if not, why.
func (m *mirror) state() (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.synced, m.lastErr
}

// get is the host's agent in the view (base less claims), nil if none. It
// takes no lock (slots).
func (m *mirror) get(hostname string) *agent {
	if slot := m.slots.slot(hostname); slot != nil {
		return slot.Load()
	}
	return nil
}

// each calls f for every agent while holding the read lock, until f
// returns false.
func (m *mirror) each(f func(*agent) bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, a := range m.agents {
		if !f(a) {
			return
		}
	}
}

// fitting returns the hostnames of the agents whose available resources
// hold d, from the index (fitIndex). The set is shared: callers must not
// change it, and must be done reading the one returned last for d.
func (m *mirror) fitting(d podresources.Demand) sets.Set[string] {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fits.fittingLocked(d, m.agents)
}

// preFilterView is what PreFilter reads of the view, under one hold of
// the lock: every hold may wait for the watch applying an event, and on a
// busy machine a goroutine that waited is woken late, in the serial
// scheduling cycle (#16).
type preFilterView struct {
	synced bool
	// why the view is not synced.
	why error
	// noAgent is fitsNoAgent's answer, "" when some agent could hold d.
	noAgent string
	// fitting is fitting's answer, when asked for and noAgent is "".
	fitting sets.Set[string]
	// wide is whether fitting was left out because more agents than the
	// caller's limit hold d.
	wide bool
}

// preFilterView reads whether the view is usable, whether any agent could
// ever hold d and, when withFitting, the agents that hold it now if they
// are at most maxFitting (else wide).
func (m *mirror) preFilterView(d podresources.Demand, withFitting bool, maxFitting int) preFilterView {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced {
		return preFilterView{why: m.lastErr}
	}
	v := preFilterView{synced: true, noAgent: fitsNoAgent(m.agents, d)}
	if v.noAgent == "" && withFitting {
		v.fitting = m.fits.fittingAtMostLocked(d, m.agents, maxFitting)
		v.wide = v.fitting == nil
	}
	return v
}

// usableAndFitsAny is state's first answer and fitsAny's, under one hold
// of the lock (PreEnqueue).
func (m *mirror) usableAndFitsAny(d podresources.Demand) (usable, fits bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.synced {
		return false, false
	}
	return true, m.fits.anyLocked(d, m.agents)
}

// fitsAny is whether any agent's available resources hold d, from the
// same index as fitting.
func (m *mirror) fitsAny(d podresources.Demand) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fits.anyLocked(d, m.agents)
}

// setLocked puts a in the view as host's agent, or takes host out when a
// is nil, and keeps the index in step.
func (m *mirror) setLocked(host string, a *agent) {
	if a == nil {
		delete(m.agents, host)
	} else {
		m.agents[host] = a
	}
	m.publishLocked(host, a)
	m.fits.changedLocked(host, a)
}

// apply folds one watch event into the view and returns the agents it
// changed.
func (m *mirror) apply(ev *brokerv1.WatchOffersResponse) []*agent {
	var resetErr error
	defer func() {
		if resetErr != nil && m.reset != nil {
			m.reset(resetErr)
		}
	}()
	// Decoded before taking the lock, which Reserve and PreFilter wait for.
	var decoded []*agent
	switch e := ev.GetEvent().(type) {
	case *brokerv1.WatchOffersResponse_Snapshot:
		decoded = make([]*agent, 0, len(e.Snapshot.GetAgents()))
		for _, pa := range e.Snapshot.GetAgents() {
			decoded = append(decoded, agentFromProto(pa))
		}
	case *brokerv1.WatchOffersResponse_Updated:
		decoded = []*agent{agentFromProto(e.Updated)}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var changed []*agent
	switch e := ev.GetEvent().(type) {
	case *brokerv1.WatchOffersResponse_Snapshot:
		if epoch := e.Snapshot.GetEpoch(); epoch != m.epoch {
			// Versions of another epoch say nothing about the claims.
			if m.claims.len() > 0 {
				resetErr = fmt.Errorf("the k8sm broker restarted (epoch %s, was %s)", epoch, m.epoch)
			}
			m.claims = newOverlay()
			m.launches = launchMarks{}
			m.epoch = epoch
		}
		// Every agent is fitted again on the next PreFilter.
		m.fits = newFitIndex()
		m.base = make(map[string]*agent, len(e.Snapshot.GetAgents()))
		m.agents = make(map[string]*agent, len(e.Snapshot.GetAgents()))
		m.byID = make(map[string]string, len(e.Snapshot.GetAgents()))
		for _, a := range decoded {
			m.base[a.hostname] = a
			m.byID[a.id] = a.hostname
		}
		for host := range m.claims.hosts() {
			if m.base[host] == nil {
				m.claims.dropHost(host)
			}
		}
		for host := range m.launches {
			if m.base[host] == nil {
				delete(m.launches, host)
			}
		}
		m.bulk = true
		for host := range m.base {
			changed = append(changed, m.recomputeLocked(host))
		}
		m.bulk = false
		m.publishAllLocked()
		m.synced, m.lastErr = true, nil
	case *brokerv1.WatchOffersResponse_Updated:
		a := decoded[0]
		if old, ok := m.byID[a.id]; ok && old != a.hostname {
			m.removeLocked(old)
		}
		m.base[a.hostname] = a
		m.byID[a.id] = a.hostname
		changed = append(changed, m.recomputeLocked(a.hostname))
	case *brokerv1.WatchOffersResponse_Removed:
		host := e.Removed.GetHostname()
		if h, ok := m.byID[e.Removed.GetAgentId()]; ok {
			host = h
		}
		m.removeLocked(host)
		delete(m.byID, e.Removed.GetAgentId())
	}
	return changed
}

// removeLocked forgets an agent and the claims and launches on it: the
// broker drops its reservations on an agent whose offers are gone, and the
// agent comes back, if ever, at a version past any launch's.
func (m *mirror) removeLocked(host string) {
	delete(m.base, host)
	m.setLocked(host, nil)
	m.claims.dropHost(host)
	delete(m.launches, host)
}

// disconnected drops the view and the overlay: offers seen from a broker we
// cannot reach may be long gone, and Reserve would fail on them anyway.
func (m *mirror) disconnected(err error) {
	m.mu.Lock()
	m.synced, m.lastErr = false, err
	m.base = map[string]*agent{}
	m.agents = map[string]*agent{}
	m.byID = map[string]string{}
	m.claims = newOverlay()
	m.launches = launchMarks{}
	m.fits = newFitIndex()
	m.epoch = ""
	m.publishAllLocked()
	m.mu.Unlock()
	if m.reset != nil {
		m.reset(err)
	}
}

func agentFromProto(a *brokerv1.Agent) *agent {
	available := brokerapi.ByRoleFromProto(a.GetAvailable())
	return &agent{
		id:         a.GetAgentId(),
		hostname:   a.GetHostname(),
		attributes: a.GetAttributes(),
		available:  available,
		capacity:   brokerapi.ByRoleFromProto(a.GetCapacity()),
		version:    a.GetResourceVersion(),
		sorted:     sortedRoles(available),
	}
}

// run keeps the watch open until ctx ends, re-opening it with back-off after
// the broker went away. Each (re)connection starts with a snapshot. changed
// hears of the agents each event changed, after the view holds them.
func (m *mirror) run(ctx context.Context, client brokerv1.BrokerClient, maxDelay time.Duration, changed func(context.Context, []*agent)) {
	logger := klog.FromContext(ctx)
	backoff := wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Jitter: 0.2, Cap: maxDelay, Steps: 1 << 30}
	for ctx.Err() == nil {
		synced, err := m.watchOnce(ctx, client, changed)
		if ctx.Err() != nil {
			return
		}
		m.disconnected(fmt.Errorf("watching offers: %w", err))
		logger.Error(err, "Offer watch ended; pods needing Mesos offers fail until it is back")
		if synced {
			backoff.Duration, backoff.Steps = 50*time.Millisecond, 1<<30
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Step()):
		}
	}
}

func (m *mirror) watchOnce(ctx context.Context, client brokerv1.BrokerClient, changed func(context.Context, []*agent)) (synced bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.WatchOffers(ctx, &brokerv1.WatchOffersRequest{})
	if err != nil {
		return false, err
	}
	var chunks snapshotChunks
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the broker ended the stream")
			}
			return synced, err
		}
		if ev, err = chunks.add(ev); err != nil {
			return synced, err
		}
		if ev == nil {
			continue // more chunks of a snapshot to come
		}
		if ev.GetSnapshot() != nil {
			synced = true
			klog.FromContext(ctx).V(2).Info("Offer view synced", "agents", len(ev.GetSnapshot().GetAgents()), "resourceVersion", ev.GetResourceVersion())
		}
		if agents := m.apply(ev); len(agents) > 0 {
			changed(ctx, agents)
		}
	}
}
