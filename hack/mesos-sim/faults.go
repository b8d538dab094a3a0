package mesossim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/master"
)

func (s *Sim) node(i int) (*agentNode, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i < 0 || i >= len(s.agents) {
		return nil, fmt.Errorf("no agent %d (have %d)", i, len(s.agents))
	}
	return s.agents[i], nil
}

// KillAgent crashes agent i: its endpoint goes away but its executors keep
// running, so RestartAgent can recover them (checkpointing frameworks).
func (s *Sim) KillAgent(i int) error {
	n, err := s.node(i)
	if err != nil {
		return fmt.Errorf("killing agent: %w", err)
	}
	s.mu.Lock()
	a := n.a
	n.a = nil
	s.mu.Unlock()
	if a == nil {
		return fmt.Errorf("killing agent %d: not running", i)
	}
	a.Stop()
	klog.InfoS("Agent killed by fault injection", "agent", i, "id", a.ID())
	return nil
}

// RestartAgent starts agent i again on the same id, port and work dir; it
// recovers checkpointed executors and re-registers.
func (s *Sim) RestartAgent(i int) error {
	if a := s.Agent(i); a != nil {
		if err := s.KillAgent(i); err != nil {
			return err
		}
	}
	return s.StartAgent(i)
}

// StartAgent starts agent i, which is not running: a standby machine
// joining the cluster, or an agent killed before.
func (s *Sim) StartAgent(i int) error {
	n, err := s.node(i)
	if err != nil {
		return fmt.Errorf("starting agent: %w", err)
	}
	s.mu.Lock()
	running := n.a != nil
	s.mu.Unlock()
	if running {
		return fmt.Errorf("starting agent %d: it is running", i)
	}
	if err := s.startAgent(n); err != nil {
		return fmt.Errorf("starting agent %d: %w", i, err)
	}
	return nil
}

// PartitionAgent cuts agent i off from the master (messages both ways are
// lost, health checks fail) or heals the partition, after which the agent
// re-registers.
func (s *Sim) PartitionAgent(i int, partitioned bool) error {
	n, err := s.node(i)
	if err != nil {
		return fmt.Errorf("partitioning agent: %w", err)
	}
	s.mu.Lock()
	a := n.a
	s.mu.Unlock()
	if a == nil {
		return fmt.Errorf("partitioning agent %d: not running", i)
	}
	a.SetPartitioned(partitioned)
	if !partitioned {
		if err := a.Register(); err != nil {
			return fmt.Errorf("healing partition of agent %d: %w", i, err)
		}
	}
	return nil
}

// MarkAgentUnreachable makes the leading master give up on agent i now,
// instead of after its ping timeouts.
func (s *Sim) MarkAgentUnreachable(i int) error {
	a := s.Agent(i)
	m := s.Leader()
	if a == nil || m == nil {
		return fmt.Errorf("marking agent %d unreachable: agent or leader missing", i)
	}
	m.MarkAgentUnreachable(a.ID())
	return nil
}

// MarkAgentGone has the leading master mark agent i gone, as an operator's
// MARK_AGENT_GONE does: its tasks end TASK_GONE_BY_OPERATOR and it may never
// register again.
func (s *Sim) MarkAgentGone(i int) error {
	a := s.Agent(i)
	m := s.Leader()
	if a == nil || m == nil {
		return fmt.Errorf("marking agent %d gone: agent or leader missing", i)
	}
	return m.MarkAgentGone(a.ID())
}

// FailoverMaster kills the leading master. With ZooKeeper another master
// takes over (a replacement is started so the count stays the same); with a
// single master a fresh one starts on the same address, knowing nothing until
// agents re-register and frameworks re-subscribe, as after a real failover
// without a replicated log.
func (s *Sim) FailoverMaster() error {
	s.mu.Lock()
	var victim *masterNode
	var idx int
	for i, n := range s.masters {
		if n.m == nil {
			continue
		}
		if s.cfg.ZK == "" || (s.leader != nil && n.m.ID() == s.leader.ID) {
			victim, idx = n, i
			break
		}
	}
	s.mu.Unlock()
	if victim == nil {
		return fmt.Errorf("failing over master: no leading master")
	}
	if victim.reg != nil {
		victim.reg.Close()
	}
	victim.m.Stop()
	s.mu.Lock()
	s.masters = append(s.masters[:idx:idx], s.masters[idx+1:]...)
	s.mu.Unlock()
	klog.InfoS("Master killed by fault injection", "master", victim.m.ID())
	mc := victim.cfg
	mc.ID = ""
	if s.cfg.ZK != "" {
		// The replacement joins the election behind the survivors.
		mc.Port = 0
	}
	if err := s.startMaster(mc); err != nil {
		return fmt.Errorf("failing over master: %w", err)
	}
	if s.cfg.ZK == "" {
		s.reregisterAgents()
	}
	return nil
}

// RescindOffer rescinds an outstanding offer now.
func (s *Sim) RescindOffer(offerID string) error {
	m := s.Leader()
	if m == nil {
		return fmt.Errorf("rescinding offer %s: no leading master", offerID)
	}
	return m.RescindOffer(offerID)
}

// CallFault drops or delays scheduler calls of one type, rescinds the
// offers they name, or loses the answers to them.
type CallFault struct {
	Type  scheduler.Call_Type
	Count int           // how many calls to affect; <= 0 means all
	Delay time.Duration // zero means drop (unless RescindOffers or LoseAnswer)
	// RescindOffers rescinds the offers an ACCEPT or DECLINE names just
	// before the master acts on it, as when the master's RESCIND crossed
	// the call on the wire: the call is answered 202 and its tasks end
	// TASK_DROPPED (TASK_LOST to frameworks that are not partition-aware).
	RescindOffers bool
	// LoseAnswer: the master acts on the call and breaks the connection
	// without answering (an ACCEPT whose outcome the caller cannot know).
	LoseAnswer bool
}

type faults struct {
	mu   sync.Mutex
	list []*CallFault
}

// hook is m's call hook: it runs before m acts on a call, without m's lock.
func (f *faults) hook(m *master.Master, call *scheduler.Call) master.CallFate {
	cf := f.match(call)
	if cf == nil {
		return master.CallFate{}
	}
	if cf.LoseAnswer {
		return master.CallFate{LoseAnswer: true}
	}
	if cf.RescindOffers {
		ids := append(call.GetAccept().GetOfferIDs(), call.GetDecline().GetOfferIDs()...)
		for _, id := range ids {
			if err := m.RescindOffer(id.Value); err != nil {
				klog.InfoS("Call fault: offer not rescinded", "offer", id.Value, "err", err)
			}
		}
		return master.CallFate{Delay: cf.Delay}
	}
	return master.CallFate{Drop: cf.Delay == 0, Delay: cf.Delay}
}

// match returns the fault that affects call (counting it), or nil.
func (f *faults) match(call *scheduler.Call) *CallFault {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, cf := range f.list {
		if cf.Type != call.Type {
			continue
		}
		if cf.Count > 0 {
			cf.Count--
			if cf.Count == 0 {
				f.list = append(f.list[:i], f.list[i+1:]...)
			}
		}
		c := *cf
		return &c
	}
	return nil
}

// InjectCallFault makes the leading master drop (Delay 0), delay, or rescind
// the offers of the next Count calls of a type. Every such call is still
// answered 202.
func (s *Sim) InjectCallFault(cf CallFault) error {
	f := &s.faults
	f.mu.Lock()
	c := cf
	f.list = append(f.list, &c)
	f.mu.Unlock()
	return nil
}

// ClearCallFaults removes all call faults.
func (s *Sim) ClearCallFaults() {
	s.faults.mu.Lock()
	s.faults.list = nil
	s.faults.mu.Unlock()
}

// HoldUpdates makes the leading master hold back the task statuses it sends
// frameworks (forwarded updates and reconciliation answers alike) while it
// goes on taking calls, as a master too loaded to answer in time; releasing
// (hold false) sends them in order. With LoseAnswer on an ACCEPT it makes
// a launch whose outcome a framework cannot learn in time.
func (s *Sim) HoldUpdates(hold bool) error {
	m := s.Leader()
	if m == nil {
		return fmt.Errorf("holding task statuses: no leading master")
	}
	m.HoldUpdates(hold)
	return nil
}

// ControlHandler serves the fault API over HTTP for tests in other
// languages and for people:
//
//	POST /agents/{i}/kill | /agents/{i}/restart | /agents/{i}/start | /agents/{i}/partition | /agents/{i}/heal | /agents/{i}/unreachable
//	POST /master/failover
//	POST /offers/{id}/rescind
//	POST /agents/{i}/gone (MARK_AGENT_GONE)
//	POST /calls/{TYPE}/drop?count=N | /calls/{TYPE}/delay?duration=2s&count=N | /calls/{TYPE}/rescind?count=N |
//	     /calls/{TYPE}/lose-answer?count=N | /calls/clear
//	POST /updates/hold | /updates/release (task statuses to frameworks)
//	GET  /cluster  (masters, leader and agents)
func (s *Sim) ControlHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if r.Method == http.MethodGet && len(parts) == 1 && parts[0] == "cluster" {
			s.serveCluster(w)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			http.Error(w, "Expecting 'POST'", http.StatusMethodNotAllowed)
			return
		}
		err := s.control(parts, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
}

func (s *Sim) control(parts []string, r *http.Request) error {
	switch {
	case len(parts) == 3 && parts[0] == "agents":
		i, err := strconv.Atoi(parts[1])
		if err != nil {
			return fmt.Errorf("bad agent index %q", parts[1])
		}
		switch parts[2] {
		case "kill":
			return s.KillAgent(i)
		case "restart":
			return s.RestartAgent(i)
		case "start":
			return s.StartAgent(i)
		case "partition":
			return s.PartitionAgent(i, true)
		case "heal":
			return s.PartitionAgent(i, false)
		case "unreachable":
			return s.MarkAgentUnreachable(i)
		case "gone":
			return s.MarkAgentGone(i)
		}
	case len(parts) == 2 && parts[0] == "master" && parts[1] == "failover":
		return s.FailoverMaster()
	case len(parts) == 3 && parts[0] == "offers" && parts[2] == "rescind":
		return s.RescindOffer(parts[1])
	case len(parts) == 2 && parts[0] == "updates" && (parts[1] == "hold" || parts[1] == "release"):
		return s.HoldUpdates(parts[1] == "hold")
	case len(parts) == 2 && parts[0] == "calls" && parts[1] == "clear":
		s.ClearCallFaults()
		return nil
	case len(parts) == 3 && parts[0] == "calls":
		t, ok := scheduler.Call_Type_value[strings.ToUpper(parts[1])]
		if !ok {
			return fmt.Errorf("unknown call type %q", parts[1])
		}
		cf := CallFault{Type: scheduler.Call_Type(t)}
		if c := r.URL.Query().Get("count"); c != "" {
			n, err := strconv.Atoi(c)
			if err != nil {
				return fmt.Errorf("bad count %q", c)
			}
			cf.Count = n
		}
		switch parts[2] {
		case "drop":
		case "lose-answer":
			cf.LoseAnswer = true
		case "delay":
			d, err := time.ParseDuration(r.URL.Query().Get("duration"))
			if err != nil || d <= 0 {
				return fmt.Errorf("bad duration %q", r.URL.Query().Get("duration"))
			}
			cf.Delay = d
		case "rescind":
			cf.RescindOffers = true
		default:
			return fmt.Errorf("unknown call fault %q", parts[2])
		}
		return s.InjectCallFault(cf)
	}
	return fmt.Errorf("unknown control path /%s", strings.Join(parts, "/"))
}

func (s *Sim) serveCluster(w http.ResponseWriter) {
	type agentView struct {
		Index       int    `json:"index"`
		ID          string `json:"id"`
		Endpoint    string `json:"endpoint"`
		Running     bool   `json:"running"`
		Partitioned bool   `json:"partitioned"`
	}
	out := struct {
		Leader  string      `json:"leader"`
		Masters []string    `json:"masters"`
		Agents  []agentView `json:"agents"`
	}{Masters: []string{}, Agents: []agentView{}}
	if m := s.Leader(); m != nil {
		out.Leader = m.Addr()
	}
	for _, m := range s.Masters() {
		out.Masters = append(out.Masters, m.Addr())
	}
	for i := 0; i < s.NumAgents(); i++ {
		v := agentView{Index: i}
		if a := s.Agent(i); a != nil {
			v.ID, v.Endpoint, v.Running, v.Partitioned = a.ID(), a.Endpoint(), true, a.Partitioned()
		}
		out.Agents = append(out.Agents, v)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
