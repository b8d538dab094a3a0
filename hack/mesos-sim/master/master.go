// Package master is a Mesos master speaking the v1 scheduler HTTP API the way
// Mesos 1.11 does: the same status codes in the same order, RecordIO event
// streams in JSON or protobuf, heartbeats, an allocator with the real
// defaults, and the real rules for failover, acknowledgements and
// reconciliation. Agents are in-process peers (see AgentConn); the
// agent-master protocol is not part of the public API so it is not emulated.
package master

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/allocator"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

type framework struct {
	id         string
	info       mesos.FrameworkInfo
	conn       *wire.Stream
	roles      []string
	multiRole  bool
	refinement bool
	partAware  bool
	offers     map[string]*offer
	tasks      map[string]*mesos.Task
	// executors by agent id
	executors      map[string]map[string]mesos.ExecutorInfo
	completedTasks []mesos.Task
	registered     time.Time
	failoverTimer  *time.Timer
	// generation changes on each (re)subscription so stale timers and stream
	// closes from an older connection are ignored.
	generation int
}

type offer struct {
	offer     mesos.Offer
	framework string
	agent     string
	role      string
	resources mesos.Resources // normalized, internal format
	timer     *time.Timer
}

type agentEntry struct {
	info        mesos.AgentInfo
	pid         string
	ip          string
	port        int
	conn        AgentConn
	registered  time.Time
	unreachable bool
	missedPings int
	// executors by framework id
	executors map[string]map[string]mesos.ExecutorInfo
}

// Master is one mesos-master.
type Master struct {
	cfg   Config
	info  mesos.MasterInfo
	start time.Time

	mu                  sync.Mutex
	leader              *mesos.MasterInfo // nil: no leader known
	elected             bool
	frameworks          map[string]*framework
	completedFrameworks map[string]*framework
	agents              map[string]*agentEntry
	offers              map[string]*offer
	alloc               *allocator.Allocator
	nextFramework       int
	nextOffer           int
	nextAgent           int
	callHook            CallHook
	// heldUpdates, while not nil, are the task statuses held back from
	// the frameworks (HoldUpdates), by framework id, in order.
	heldUpdates map[string][]mesos.TaskStatus
	orphanTasks map[string][]*mesos.Task
	// gone are the agents an operator marked gone (MARK_AGENT_GONE): they
	// may never register again.
	gone map[string]bool
	// subscribers are the operator API's SUBSCRIBE streams.
	subscribers map[*wire.Stream]struct{}
	stop        context.CancelFunc
	ctx         context.Context

	kick     chan struct{}
	listener net.Listener
	server   *http.Server
	done     chan struct{}
}

// New creates a master that is its own leader until SetLeader says otherwise.
func New(cfg Config) *Master {
	cfg.setDefaults()
	if cfg.ID == "" {
		cfg.ID = uuid.NewString()
	}
	m := &Master{
		cfg:                 cfg,
		frameworks:          map[string]*framework{},
		completedFrameworks: map[string]*framework{},
		agents:              map[string]*agentEntry{},
		offers:              map[string]*offer{},
		orphanTasks:         map[string][]*mesos.Task{},
		gone:                map[string]bool{},
		alloc:               allocator.New(),
		kick:                make(chan struct{}, 1),
		done:                make(chan struct{}),
		elected:             true,
	}
	return m
}

// Start listens (on cfg.IP:cfg.Port, port 0 picks one) and runs the
// allocation and agent health loops until ctx ends or Stop.
func (m *Master) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(m.cfg.IP, strconv.Itoa(m.cfg.Port)))
	if err != nil {
		return fmt.Errorf("starting master %s: listening: %w", m.cfg.ID, err)
	}
	if m.cfg.TLS != nil {
		ln = tlsListener(ln, m.cfg.TLS, m.cfg.TLSDowngrade)
	}
	m.listener = ln
	m.cfg.Port = ln.Addr().(*net.TCPAddr).Port
	if m.cfg.Credentials != nil {
		klog.InfoS("Master only allowing authenticated HTTP frameworks to register", "master", m.cfg.ID, "realm", FrameworkRealm)
	}
	port := uint32(m.cfg.Port)
	host := m.cfg.Hostname
	ip := m.cfg.IP
	pid := "master@" + net.JoinHostPort(m.cfg.IP, strconv.Itoa(m.cfg.Port))
	version := "1.11.0"
	m.info = mesos.MasterInfo{
		ID:       m.cfg.ID,
		IP:       ipToUint32(m.cfg.IP),
		Port:     &port,
		PID:      &pid,
		Hostname: &host,
		Version:  &version,
		Address:  &mesos.Address{Hostname: &host, IP: &ip, Port: int32(port)},
	}
	m.start = time.Now()
	ctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.ctx = ctx
	if m.elected {
		self := m.info
		m.leader = &self
	}
	m.mu.Unlock()
	m.server = &http.Server{Handler: m.Handler(), BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := m.server.Serve(ln); err != nil && err != http.ErrServerClosed {
			klog.ErrorS(err, "Master HTTP server stopped", "master", m.cfg.ID)
		}
	}()
	go m.allocationLoop(ctx)
	go m.healthLoop(ctx)
	go func() {
		<-ctx.Done()
		m.shutdownStreams()
		_ = m.server.Close()
		close(m.done)
	}()
	m.stop = cancel
	klog.InfoS("Master started", "master", m.cfg.ID, "address", ln.Addr().String())
	return nil
}

// Stop ends the master as a crash would: streams are cut, nothing is handed over.
func (m *Master) Stop() {
	if m.stop != nil {
		m.stop()
		<-m.done
	}
}

// Info is the MasterInfo this master announces.
func (m *Master) Info() mesos.MasterInfo { return m.info }

// ID is the master id.
func (m *Master) ID() string { return m.cfg.ID }

// URL is http://host:port, or https:// when the master serves TLS.
func (m *Master) URL() string {
	if m.cfg.TLS != nil {
		return "https://" + m.Addr()
	}
	return "http://" + m.Addr()
}

// Addr is host:port of the HTTP endpoint.
func (m *Master) Addr() string { return net.JoinHostPort(m.cfg.IP, strconv.Itoa(m.cfg.Port)) }

// SetLeader tells the master who leads (from ZooKeeper detection). nil means no leader is known.
func (m *Master) SetLeader(leader *mesos.MasterInfo) {
	m.mu.Lock()
	defer m.mu.Unlock()
	wasElected := m.elected
	m.leader = leader
	m.elected = leader != nil && leader.ID == m.cfg.ID
	if wasElected && !m.elected {
		// A demoted master stops serving its frameworks; they must re-detect.
		for _, fw := range m.frameworks {
			if fw.conn != nil {
				fw.conn.Close()
			}
		}
	}
}

// Elected reports whether this master currently leads.
func (m *Master) Elected() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.elected
}

// SetCallHook installs a hook to drop or delay scheduler calls (nil removes it).
func (m *Master) SetCallHook(h CallHook) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.callHook = h
}

// HoldUpdates holds back every task status the master would send a
// framework (the agents' updates it forwards and its answers to
// reconciliation), as an overloaded master does whose event stream lags
// behind its work: calls are still taken. Releasing sends the held statuses
// in the order the master made them.
func (m *Master) HoldUpdates(hold bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if hold {
		if m.heldUpdates == nil {
			m.heldUpdates = map[string][]mesos.TaskStatus{}
		}
		return
	}
	held := m.heldUpdates
	m.heldUpdates = nil
	for id, sts := range held {
		if fw := m.frameworks[id]; fw != nil {
			for _, st := range sts {
				m.sendUpdate(fw, st)
			}
		}
	}
}

func (m *Master) shutdownStreams() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, fw := range m.frameworks {
		if fw.conn != nil {
			fw.conn.Close()
		}
		if fw.failoverTimer != nil {
			fw.failoverTimer.Stop()
		}
	}
	for _, o := range m.offers {
		if o.timer != nil {
			o.timer.Stop()
		}
	}
}

func (m *Master) triggerAllocation() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Master) allocationLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.AllocationInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
		m.allocate()
	}
}

func ipToUint32(s string) uint32 {
	ip := net.ParseIP(s).To4()
	if ip == nil {
		return 0
	}
	// MasterInfo.ip is in network byte order read as a little-endian host integer (MESOS-1201).
	return uint32(ip[0]) | uint32(ip[1])<<8 | uint32(ip[2])<<16 | uint32(ip[3])<<24
}
