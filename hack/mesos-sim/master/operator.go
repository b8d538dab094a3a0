package master

import (
	"errors"
	"net/http"
	"sort"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	operator "github.com/mesos/mesos-go/api/v1/lib/master"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// Version is the Mesos release the double plays.
const Version = "1.11.0"

// VersionInfo is what GET_VERSION and /version report.
func VersionInfo() mesos.VersionInfo {
	date, user, sha, tag := "2020-11-24 10:32:06", "mesos-sim", "b3d2cd7", "1.11.0"
	t := float64(time.Date(2020, 11, 24, 10, 32, 6, 0, time.UTC).Unix())
	return mesos.VersionInfo{Version: Version, BuildDate: &date, BuildTime: &t, BuildUser: &user, GitSHA: &sha, GitTag: &tag}
}

// serveOperator is the v1 operator API, POST /api/v1, with the checks of
// Master::Http::api in their order.
func (m *Master) serveOperator(w http.ResponseWriter, r *http.Request) {
	if !m.Elected() {
		m.redirect(w, r)
		return
	}
	var call operator.Call
	if wire.ReadCall(w, r, m.cfg.MaxRequestSize, &call) == "" {
		return
	}
	if err := validateOperatorCall(&call); err != nil {
		httpError(w, http.StatusBadRequest, "Failed to validate master::Call: "+err.Error())
		return
	}
	accept, ok := wire.NegotiateStream(r.Header.Values("Accept"))
	if !ok {
		httpError(w, http.StatusNotAcceptable, wire.NotAcceptableMessage)
		return
	}
	klog.V(2).InfoS("Processing operator call", "type", call.Type)
	var resp *operator.Response
	switch call.Type {
	case operator.Call_GET_HEALTH:
		resp = &operator.Response{Type: operator.Response_GET_HEALTH, GetHealth: &operator.Response_GetHealth{Healthy: true}}
	case operator.Call_GET_VERSION:
		resp = &operator.Response{Type: operator.Response_GET_VERSION, GetVersion: &operator.Response_GetVersion{VersionInfo: VersionInfo()}}
	case operator.Call_GET_FLAGS:
		var flags []mesos.Flag
		for _, f := range m.flags() {
			v := f.value
			flags = append(flags, mesos.Flag{Name: f.name, Value: &v})
		}
		resp = &operator.Response{Type: operator.Response_GET_FLAGS, GetFlags: &operator.Response_GetFlags{Flags: flags}}
	case operator.Call_GET_MASTER:
		resp = &operator.Response{Type: operator.Response_GET_MASTER, GetMaster: m.getMaster()}
	case operator.Call_GET_STATE:
		resp = &operator.Response{Type: operator.Response_GET_STATE, GetState: m.getState()}
	case operator.Call_GET_AGENTS:
		resp = &operator.Response{Type: operator.Response_GET_AGENTS, GetAgents: m.getState().GetAgents}
	case operator.Call_GET_FRAMEWORKS:
		resp = &operator.Response{Type: operator.Response_GET_FRAMEWORKS, GetFrameworks: m.getState().GetFrameworks}
	case operator.Call_GET_EXECUTORS:
		resp = &operator.Response{Type: operator.Response_GET_EXECUTORS, GetExecutors: m.getState().GetExecutors}
	case operator.Call_GET_TASKS:
		resp = &operator.Response{Type: operator.Response_GET_TASKS, GetTasks: m.getState().GetTasks}
	case operator.Call_GET_ROLES:
		resp = &operator.Response{Type: operator.Response_GET_ROLES, GetRoles: &operator.Response_GetRoles{Roles: m.roles()}}
	case operator.Call_TEARDOWN:
		if !m.teardown(call.Teardown.FrameworkID.Value) {
			httpError(w, http.StatusBadRequest, "No framework found with specified ID")
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	case operator.Call_MARK_AGENT_GONE:
		if err := m.MarkAgentGone(call.MarkAgentGone.AgentID.Value); err != nil {
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	case operator.Call_SUBSCRIBE:
		m.serveOperatorSubscribe(w, r, accept)
		return
	default:
		// Reservations, volumes, maintenance, quota, weights, logging and
		// files are not played by the double.
		httpError(w, http.StatusNotImplemented, "mesos-sim does not implement "+call.Type.String())
		return
	}
	wire.WriteMessage(w, accept, resp)
}

// validateOperatorCall is validation::master::call::validate for the calls
// the double serves.
func validateOperatorCall(c *operator.Call) error {
	switch c.Type {
	case operator.Call_TEARDOWN:
		if c.Teardown == nil {
			return errors.New("Expecting 'teardown' to be present")
		}
	case operator.Call_MARK_AGENT_GONE:
		if c.MarkAgentGone == nil {
			return errors.New("Expecting 'mark_agent_gone' to be present")
		}
	case operator.Call_GET_METRICS:
		if c.GetMetrics == nil {
			return errors.New("Expecting 'get_metrics' to be present")
		}
	}
	return nil
}

func (m *Master) getMaster() *operator.Response_GetMaster {
	info := m.Info()
	start := float64(m.start.UnixNano()) / 1e9
	out := &operator.Response_GetMaster{MasterInfo: &info, StartTime: &start}
	if m.Elected() {
		out.ElectedTime = &start
	}
	return out
}

func timeInfo(t time.Time) *mesos.TimeInfo { return &mesos.TimeInfo{Nanoseconds: t.UnixNano()} }

// getState is GET_STATE: tasks, executors, frameworks and agents.
func (m *Master) getState() *operator.Response_GetState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.getStateLocked()
}

func (m *Master) getStateLocked() *operator.Response_GetState {
	tasks := &operator.Response_GetTasks{}
	execs := &operator.Response_GetExecutors{}
	fws := &operator.Response_GetFrameworks{}
	agents := &operator.Response_GetAgents{}
	for _, id := range sortedKeys(m.frameworks) {
		fw := m.frameworks[id]
		fws.Frameworks = append(fws.Frameworks, m.frameworkInfoLocked(fw, true))
		for _, tid := range sortedKeys(fw.tasks) {
			t := *fw.tasks[tid]
			if ag := m.agents[t.AgentID.Value]; ag != nil && ag.unreachable {
				tasks.UnreachableTasks = append(tasks.UnreachableTasks, t)
			} else {
				tasks.Tasks = append(tasks.Tasks, t)
			}
		}
		tasks.CompletedTasks = append(tasks.CompletedTasks, fw.completedTasks...)
		for _, aid := range sortedKeys(fw.executors) {
			for _, eid := range sortedKeys(fw.executors[aid]) {
				execs.Executors = append(execs.Executors, operator.Response_GetExecutors_Executor{ExecutorInfo: fw.executors[aid][eid], AgentID: mesos.AgentID{Value: aid}})
			}
		}
	}
	for _, id := range sortedKeys(m.completedFrameworks) {
		fw := m.completedFrameworks[id]
		fws.CompletedFrameworks = append(fws.CompletedFrameworks, m.frameworkInfoLocked(fw, false))
		tasks.CompletedTasks = append(tasks.CompletedTasks, fw.completedTasks...)
	}
	for _, fid := range sortedKeys(m.orphanTasks) {
		for _, t := range m.orphanTasks[fid] {
			tasks.OrphanTasks = append(tasks.OrphanTasks, *t)
		}
	}
	for _, id := range sortedKeys(m.agents) {
		if ag := m.agents[id]; !ag.unreachable {
			agents.Agents = append(agents.Agents, m.agentInfoLocked(ag))
		}
	}
	return &operator.Response_GetState{GetTasks: tasks, GetExecutors: execs, GetFrameworks: fws, GetAgents: agents}
}

func (m *Master) agentInfoLocked(ag *agentEntry) operator.Response_GetAgents_Agent {
	pid := ag.pid
	out := operator.Response_GetAgents_Agent{
		AgentInfo: ag.info, Active: !ag.unreachable, Version: Version, PID: &pid,
		RegisteredTime: timeInfo(ag.registered), TotalResources: ag.info.Resources,
		Capabilities: agentCapabilities(),
	}
	for _, fw := range m.frameworks {
		for _, t := range fw.tasks {
			if t.AgentID.Value == ag.info.ID.Value && !isTerminal(t.GetState()) {
				out.AllocatedResources = append(out.AllocatedResources, t.Resources...)
			}
		}
	}
	for _, o := range m.offers {
		if o.agent == ag.info.ID.Value {
			out.OfferedResources = append(out.OfferedResources, o.offer.Resources...)
		}
	}
	return out
}

// agentCapabilities are those a Mesos 1.11 agent registers with by default.
func agentCapabilities() []mesos.AgentInfo_Capability {
	var out []mesos.AgentInfo_Capability
	for _, t := range []mesos.AgentInfo_Capability_Type{
		mesos.AgentInfo_Capability_MULTI_ROLE, mesos.AgentInfo_Capability_HIERARCHICAL_ROLE,
		mesos.AgentInfo_Capability_RESERVATION_REFINEMENT, mesos.AgentInfo_Capability_RESOURCE_PROVIDER,
		mesos.AgentInfo_Capability_RESIZE_VOLUME, mesos.AgentInfo_Capability_AGENT_OPERATION_FEEDBACK,
		mesos.AgentInfo_Capability_AGENT_DRAINING, mesos.AgentInfo_Capability_TASK_RESOURCE_LIMITS,
	} {
		out = append(out, mesos.AgentInfo_Capability{Type: t})
	}
	return out
}

func (m *Master) frameworkInfoLocked(fw *framework, registered bool) operator.Response_GetFrameworks_Framework {
	info := fw.info
	id := mesos.FrameworkID{Value: fw.id}
	info.ID = &id
	out := operator.Response_GetFrameworks_Framework{
		FrameworkInfo: info, Active: registered && fw.conn != nil, Connected: registered && fw.conn != nil,
		RegisteredTime: timeInfo(fw.registered),
	}
	for _, oid := range sortedKeys(fw.offers) {
		out.Offers = append(out.Offers, fw.offers[oid].offer)
	}
	for _, t := range fw.tasks {
		if !isTerminal(t.GetState()) {
			out.AllocatedResources = append(out.AllocatedResources, t.Resources...)
		}
	}
	for _, o := range fw.offers {
		out.OfferedResources = append(out.OfferedResources, o.offer.Resources...)
	}
	return out
}

// roles is GET_ROLES: every role a framework subscribed with, and "*".
func (m *Master) roles() []mesos.Role {
	m.mu.Lock()
	defer m.mu.Unlock()
	byRole := map[string][]mesos.FrameworkID{"*": nil}
	for _, id := range sortedKeys(m.frameworks) {
		for _, r := range m.frameworks[id].roles {
			byRole[r] = append(byRole[r], mesos.FrameworkID{Value: id})
		}
	}
	var out []mesos.Role
	for _, r := range sortedKeys(byRole) {
		out = append(out, mesos.Role{Name: r, Weight: 1, Frameworks: byRole[r]})
	}
	return out
}

// serveOperatorSubscribe streams SUBSCRIBED (the whole state), then the
// master's events, and HEARTBEATs, as RecordIO in the negotiated encoding.
func (m *Master) serveOperatorSubscribe(w http.ResponseWriter, r *http.Request, accept string) {
	s := wire.NewStream(accept, "")
	hb := m.cfg.HeartbeatInterval.Seconds()
	m.mu.Lock()
	s.Send(&operator.Event{Type: operator.Event_SUBSCRIBED, Subscribed: &operator.Event_Subscribed{GetState: m.getStateLocked(), HeartbeatIntervalSeconds: &hb}})
	if m.subscribers == nil {
		m.subscribers = map[*wire.Stream]struct{}{}
	}
	m.subscribers[s] = struct{}{}
	m.mu.Unlock()
	go func() {
		t := time.NewTicker(m.cfg.HeartbeatInterval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				if !s.Send(&operator.Event{Type: operator.Event_HEARTBEAT}) {
					return
				}
			case <-s.Done():
				return
			}
		}
	}()
	w.Header().Set("Content-Type", accept)
	s.Serve(r.Context(), w)
	m.mu.Lock()
	delete(m.subscribers, s)
	m.mu.Unlock()
}

// publishLocked sends an event to every operator subscriber.
func (m *Master) publishLocked(ev *operator.Event) {
	for s := range m.subscribers {
		if !s.Send(ev) {
			delete(m.subscribers, s)
		}
	}
}

func sortedKeys[V any](mp map[string]V) []string {
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
