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
}

// mirror is a local copy of the broker's offer view, fed by WatchOffers, like
// an informer's store. Filter reads it for every node, so reads must be cheap
// and never wait on the network.
type mirror struct {
	mu     sync.RWMutex
	synced bool
	// lastErr says why the view is not synced, for the pods failed meanwhile.
	lastErr error
	agents  map[string]*agent // by hostname (= Node name)
	byID    map[string]string // agent id -> hostname
}

func newMirror() *mirror {
	return &mirror{
		agents:  map[string]*agent{},
		byID:    map[string]string{},
		lastErr: errors.New("the offer watch has not started yet"),
	}
}

// state returns whether the view is usable and, if not, why.
func (m *mirror) state() (bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.synced, m.lastErr
}

func (m *mirror) get(hostname string) *agent {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.agents[hostname]
}

// each calls f for every agent while holding the read lock.
func (m *mirror) each(f func(*agent)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, a := range m.agents {
		f(a)
	}
}

// fitting returns the hostnames of the agents whose available resources
// hold d.
func (m *mirror) fitting(d podresources.Demand) sets.Set[string] {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := sets.New[string]()
	for host, a := range m.agents {
		if _, short := a.available.Fit(d); short.Fits() {
			out.Insert(host)
		}
	}
	return out
}

// assume subtracts a claim the broker granted from the local copy until the
// watch delivers the agent's view that includes it: claimVersion is the
// agent's version right after the claim (ReserveResponse.resource_version),
// so a copy older than that lacks it, whatever else changed meanwhile. The
// broker's next update for the agent replaces the guess either way. Without
// this, the pods scheduled right after this one would see the claimed
// resources as free until the watch catches up, and fail their Reserve. A
// broker that sends no version (0) leaves only the old test: the copy is the
// one Filter saw (seenVersion), so that subtracting twice cannot hide free
// resources.
func (m *mirror) assume(hostname string, seenVersion, claimVersion uint64, role string, claim podresources.Resources) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.agents[hostname]
	if a == nil {
		return
	}
	if claimVersion != 0 && a.version >= claimVersion {
		return
	}
	if claimVersion == 0 && a.version != seenVersion {
		return
	}
	cp := *a
	cp.available = a.available.Clone()
	cp.available[role] = cp.available[role].Subtract(claim)
	m.agents[hostname] = &cp
}

// apply folds one watch event into the view and returns the agents it
// changed.
func (m *mirror) apply(ev *brokerv1.WatchOffersResponse) []*agent {
	m.mu.Lock()
	defer m.mu.Unlock()
	var changed []*agent
	switch e := ev.GetEvent().(type) {
	case *brokerv1.WatchOffersResponse_Snapshot:
		m.agents = make(map[string]*agent, len(e.Snapshot.GetAgents()))
		m.byID = make(map[string]string, len(e.Snapshot.GetAgents()))
		for _, pa := range e.Snapshot.GetAgents() {
			a := agentFromProto(pa)
			m.put(a)
			changed = append(changed, a)
		}
		m.synced, m.lastErr = true, nil
	case *brokerv1.WatchOffersResponse_Updated:
		a := agentFromProto(e.Updated)
		if old, ok := m.byID[a.id]; ok && old != a.hostname {
			delete(m.agents, old)
		}
		m.put(a)
		changed = append(changed, a)
	case *brokerv1.WatchOffersResponse_Removed:
		host := e.Removed.GetHostname()
		if h, ok := m.byID[e.Removed.GetAgentId()]; ok {
			host = h
		}
		delete(m.agents, host)
		delete(m.byID, e.Removed.GetAgentId())
	}
	return changed
}

func (m *mirror) put(a *agent) {
	m.agents[a.hostname] = a
	m.byID[a.id] = a.hostname
}

// disconnected drops the view: offers seen from a broker we cannot reach may
// be long gone, and Reserve would fail on them anyway.
func (m *mirror) disconnected(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.synced, m.lastErr = false, err
	m.agents = map[string]*agent{}
	m.byID = map[string]string{}
}

func agentFromProto(a *brokerv1.Agent) *agent {
	return &agent{
		id:         a.GetAgentId(),
		hostname:   a.GetHostname(),
		attributes: a.GetAttributes(),
		available:  brokerapi.ByRoleFromProto(a.GetAvailable()),
		capacity:   brokerapi.ByRoleFromProto(a.GetCapacity()),
		version:    a.GetResourceVersion(),
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
	for {
		ev, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("the broker ended the stream")
			}
			return synced, err
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
