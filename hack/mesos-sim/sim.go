// Package mesossim runs a protocol-faithful Mesos cluster in one process:
// one or more masters (elected through ZooKeeper when there are several),
// agents that run real executor processes (or hollow agents for scale), and a
// fault API for tests. Embed it like etcd's embed package:
//
//	s, err := mesossim.Start(ctx, mesossim.Config{Agents: []agent.Config{{Resources: res}}})
//	defer s.Close()
//	url := s.MasterURL() // http://127.0.0.1:port, POST /api/v1/scheduler
package mesossim

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/zkdetect"
)

// Config describes the simulated cluster.
type Config struct {
	// Masters is the number of masters (default 1). More than one needs ZK.
	Masters int
	// ZK is a zk://host:port/path URL; when set, masters register there and
	// leadership follows the ZooKeeper election.
	ZK string
	// Master is the template for every master; Port applies to the first one only.
	Master master.Config
	// Agents lists the agents to start.
	Agents []agent.Config
	// StandbyAgents are machines whose agent is not started: the fault
	// API's POST /agents/{i}/start (i counting on after Agents) starts one,
	// as a machine that joins the running cluster.
	StandbyAgents []agent.Config
	// WorkDir holds agent work dirs not set explicitly (a temp dir when empty).
	WorkDir string
}

type masterNode struct {
	m   *master.Master
	reg *zkdetect.Registration
	cfg master.Config
}

type agentNode struct {
	cfg agent.Config
	a   *agent.Agent
}

// Sim is a running simulated cluster.
type Sim struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	masters []*masterNode
	agents  []*agentNode
	leader  *mesos.MasterInfo
	tmpDir  string
	leaderC chan struct{}
	faults  faults
}

// Start brings the cluster up and returns once every agent is registered.
func Start(ctx context.Context, cfg Config) (*Sim, error) {
	if cfg.Masters <= 0 {
		cfg.Masters = 1
	}
	if cfg.Masters > 1 && cfg.ZK == "" {
		return nil, fmt.Errorf("starting mesos-sim: %d masters need a --zk URL for leader election", cfg.Masters)
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &Sim{cfg: cfg, ctx: ctx, cancel: cancel, leaderC: make(chan struct{}, 1)}
	if cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "mesos-sim-")
		if err != nil {
			cancel()
			return nil, fmt.Errorf("starting mesos-sim: creating work dir: %w", err)
		}
		s.tmpDir = d
		s.cfg.WorkDir = d
	}
	for i := 0; i < cfg.Masters; i++ {
		mc := cfg.Master
		if i > 0 {
			mc.Port = 0
		}
		mc.ID = ""
		if err := s.startMaster(mc); err != nil {
			s.Close()
			return nil, err
		}
	}
	if cfg.ZK != "" {
		if err := zkdetect.Watch(ctx, cfg.ZK, s.onLeader); err != nil {
			s.Close()
			return nil, fmt.Errorf("starting mesos-sim: watching masters: %w", err)
		}
		if err := s.waitLeader(ctx); err != nil {
			s.Close()
			return nil, err
		}
	}
	for i, ac := range slices.Concat(cfg.Agents, cfg.StandbyAgents) {
		if ac.WorkDir == "" {
			ac.WorkDir = filepath.Join(s.cfg.WorkDir, "agent-"+strconv.Itoa(i))
		}
		if ac.Hostname == "" {
			ac.Hostname = "agent-" + strconv.Itoa(i)
		}
		n := &agentNode{cfg: ac}
		s.mu.Lock()
		s.agents = append(s.agents, n)
		s.mu.Unlock()
		if i >= len(cfg.Agents) {
			continue
		}
		if err := s.startAgent(n); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Sim) startMaster(mc master.Config) error {
	m := master.New(mc)
	// Injected call faults survive master failovers.
	m.SetCallHook(func(c *scheduler.Call) master.CallFate { return s.faults.hook(m, c) })
	if s.cfg.ZK != "" {
		// Until ZooKeeper says otherwise nobody leads.
		m.SetLeader(nil)
	}
	if err := m.Start(s.ctx); err != nil {
		return fmt.Errorf("starting mesos-sim: %w", err)
	}
	n := &masterNode{m: m, cfg: mc}
	n.cfg.Port = mustPort(m.Addr())
	n.cfg.ID = m.ID()
	if s.cfg.ZK != "" {
		reg, err := zkdetect.Register(s.cfg.ZK, m.Info())
		if err != nil {
			m.Stop()
			return fmt.Errorf("starting mesos-sim: %w", err)
		}
		n.reg = reg
		// Every master follows the election itself, as real masters do.
		if err := zkdetect.Watch(s.ctx, s.cfg.ZK, m.SetLeader); err != nil {
			reg.Close()
			m.Stop()
			return fmt.Errorf("starting mesos-sim: master %s watching ZooKeeper: %w", m.ID(), err)
		}
	}
	s.mu.Lock()
	s.masters = append(s.masters, n)
	s.mu.Unlock()
	return nil
}

func mustPort(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

func (s *Sim) onLeader(info *mesos.MasterInfo) {
	s.mu.Lock()
	s.leader = info
	s.mu.Unlock()
	if info != nil {
		klog.InfoS("Leading master detected", "master", info.ID)
		select {
		case s.leaderC <- struct{}{}:
		default:
		}
		// Agents re-register with the new leader, reporting what they run.
		go s.reregisterAgents()
	}
}

func (s *Sim) waitLeader(ctx context.Context) error {
	for {
		if s.Leader() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for a leading master: %w", ctx.Err())
		case <-s.leaderC:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Sim) reregisterAgents() {
	s.mu.Lock()
	agents := append([]*agentNode(nil), s.agents...)
	s.mu.Unlock()
	for _, n := range agents {
		s.mu.Lock()
		a := n.a
		s.mu.Unlock()
		if a == nil || a.Partitioned() {
			continue
		}
		// The new leader may not know yet that it leads; retry briefly.
		for i := 0; i < 100 && s.ctx.Err() == nil; i++ {
			if err := a.Register(); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (s *Sim) startAgent(n *agentNode) error {
	s.mu.Lock()
	cfg := n.cfg
	s.mu.Unlock()
	a := agent.New(cfg, &router{s: s})
	var err error
	for i := 0; i < 100; i++ {
		if err = a.Start(s.ctx); err == nil {
			break
		}
		// During a master election registration can fail for a moment.
		time.Sleep(50 * time.Millisecond)
		a = agent.New(cfg, &router{s: s})
	}
	if err != nil {
		return fmt.Errorf("starting mesos-sim agent %s: %w", n.cfg.Hostname, err)
	}
	s.mu.Lock()
	n.a = a
	// Keep the port and id so that a restart comes back as the same agent.
	n.cfg = a.Config()
	s.mu.Unlock()
	return nil
}

// Leader returns the leading master (nil during an election).
func (s *Sim) Leader() *master.Master {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.ZK == "" {
		for _, n := range s.masters {
			if n.m != nil {
				return n.m
			}
		}
		return nil
	}
	if s.leader == nil {
		return nil
	}
	for _, n := range s.masters {
		if n.m != nil && n.m.ID() == s.leader.ID {
			return n.m
		}
	}
	return nil
}

// MasterURL is http(s)://host:port of the leading master (of the first master when there is no leader).
func (s *Sim) MasterURL() string {
	if m := s.Leader(); m != nil {
		return m.URL()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.masters {
		if n.m != nil {
			return n.m.URL()
		}
	}
	return ""
}

// Masters returns the running masters.
func (s *Sim) Masters() []*master.Master {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*master.Master
	for _, n := range s.masters {
		if n.m != nil {
			out = append(out, n.m)
		}
	}
	return out
}

// Agent returns the i-th agent's current incarnation (nil while killed).
func (s *Sim) Agent(i int) *agent.Agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.agents) {
		return nil
	}
	return s.agents[i].a
}

// NumAgents is the number of configured agents.
func (s *Sim) NumAgents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.agents)
}

// Close stops everything and kills every executor.
func (s *Sim) Close() {
	s.mu.Lock()
	agents := append([]*agentNode(nil), s.agents...)
	masters := append([]*masterNode(nil), s.masters...)
	s.mu.Unlock()
	for _, n := range agents {
		if n.a != nil {
			n.a.Shutdown()
		}
	}
	for _, n := range masters {
		if n.reg != nil {
			n.reg.Close()
		}
		if n.m != nil {
			n.m.Stop()
		}
	}
	s.cancel()
	if s.tmpDir != "" {
		_ = os.RemoveAll(s.tmpDir)
	}
}

// router is an agent's MasterLink: it reaches whichever master leads.
type router struct{ s *Sim }

func (r *router) leader() (*master.Master, error) {
	m := r.s.Leader()
	if m == nil {
		return nil, fmt.Errorf("no leading master")
	}
	return m, nil
}

func (r *router) RegisterAgent(reg master.AgentRegistration, conn master.AgentConn) (string, error) {
	m, err := r.leader()
	if err != nil {
		return "", err
	}
	return m.RegisterAgent(reg, conn)
}

func (r *router) UnregisterAgent(id string) {
	if m, err := r.leader(); err == nil {
		m.UnregisterAgent(id)
	}
}

func (r *router) StatusUpdate(id string, u master.StatusUpdate) {
	if m, err := r.leader(); err == nil {
		m.StatusUpdate(id, u)
	}
}

func (r *router) ExecutorExited(id, fw, exec string, status int32) {
	if m, err := r.leader(); err == nil {
		m.ExecutorExited(id, fw, exec, status)
	}
}

func (r *router) ExecutorMessage(id, fw, exec string, data []byte) {
	if m, err := r.leader(); err == nil {
		m.ExecutorMessage(id, fw, exec, data)
	}
}
