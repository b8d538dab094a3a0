package master

import (
	"fmt"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	operator "github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

func hasCapability(info *mesos.FrameworkInfo, t mesos.FrameworkInfo_Capability_Type) bool {
	for _, c := range info.Capabilities {
		if c.Type == t {
			return true
		}
	}
	return false
}

func frameworkRoles(info *mesos.FrameworkInfo) []string {
	if hasCapability(info, mesos.FrameworkInfo_Capability_MULTI_ROLE) {
		return append([]string(nil), info.Roles...)
	}
	return []string{info.GetRole()}
}

func (fw *framework) apply(info mesos.FrameworkInfo) {
	fw.info = info
	id := mesos.FrameworkID{Value: fw.id}
	fw.info.ID = &id
	fw.roles = frameworkRoles(&fw.info)
	fw.multiRole = hasCapability(&fw.info, mesos.FrameworkInfo_Capability_MULTI_ROLE)
	fw.refinement = hasCapability(&fw.info, mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT)
	fw.partAware = hasCapability(&fw.info, mesos.FrameworkInfo_Capability_PARTITION_AWARE)
}

func validateFrameworkInfo(info *mesos.FrameworkInfo) error {
	multi := hasCapability(info, mesos.FrameworkInfo_Capability_MULTI_ROLE)
	if multi && info.Role != nil {
		return fmt.Errorf("'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable")
	}
	if !multi && len(info.Roles) > 0 {
		return fmt.Errorf("'FrameworkInfo.roles' must not be set when the framework is not MULTI_ROLE capable")
	}
	if ft := info.GetFailoverTimeout(); ft < 0 {
		return fmt.Errorf("Invalid failover_timeout: %v", ft)
	}
	return nil
}

// subscribe registers or fails over a framework on stream. It returns the
// framework id and connection generation, or "" when the subscription was
// refused (the stream then carries one ERROR event and closes).
func (m *Master) subscribe(stream *wire.Stream, sub *scheduler.Call_Subscribe) (string, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	info := *sub.FrameworkInfo
	if err := validateFrameworkInfo(&info); err != nil {
		stream.Send(errorEvent(err.Error()))
		stream.Close()
		return "", 0
	}
	id := info.GetID().GetValue()
	if id != "" {
		if _, gone := m.completedFrameworks[id]; gone {
			stream.Send(errorEvent("Framework has been removed"))
			stream.Close()
			return "", 0
		}
	}
	fw := m.frameworks[id]
	if fw == nil {
		if id == "" {
			id = fmt.Sprintf("%s-%04d", m.cfg.ID, m.nextFramework)
			m.nextFramework++
		}
		// An unknown id is accepted: after a master failover the new leader
		// learns frameworks only from their re-subscription.
		fw = &framework{
			id:         id,
			offers:     map[string]*offer{},
			tasks:      map[string]*mesos.Task{},
			executors:  map[string]map[string]mesos.ExecutorInfo{},
			registered: time.Now(),
		}
		m.frameworks[id] = fw
		m.adoptAgentState(fw)
		defer func() {
			// After the subscription filled in the framework's info.
			m.publishLocked(&operator.Event{Type: operator.Event_FRAMEWORK_ADDED, FrameworkAdded: &operator.Event_FrameworkAdded{Framework: m.frameworkInfoLocked(fw, true)}})
		}()
		klog.InfoS("Framework registered", "framework", id, "name", info.Name)
	} else {
		if fw.conn != nil {
			fw.conn.Send(errorEvent("Framework failed over"))
			fw.conn.Close()
		}
		if fw.failoverTimer != nil {
			fw.failoverTimer.Stop()
			fw.failoverTimer = nil
		}
		// Outstanding offers went to the old scheduler instance; they are
		// discarded without RESCIND, the new instance never saw them.
		for _, o := range fw.offers {
			m.removeOffer(o, 0)
		}
		klog.InfoS("Framework failed over", "framework", id)
	}
	fw.apply(info)
	fw.conn = stream
	fw.generation++
	m.alloc.AddFramework(fw.id, fw.roles, sub.SuppressedRoles)
	m.alloc.SetGPUAware(fw.id, hasCapability(&fw.info, mesos.FrameworkInfo_Capability_GPU_RESOURCES))
	hb := m.cfg.HeartbeatInterval.Seconds()
	mi := m.info
	fid := mesos.FrameworkID{Value: fw.id}
	stream.Send(&scheduler.Event{Type: scheduler.Event_SUBSCRIBED, Subscribed: &scheduler.Event_Subscribed{
		FrameworkID: &fid, HeartbeatIntervalSeconds: &hb, MasterInfo: &mi,
	}})
	m.triggerAllocation()
	return fw.id, fw.generation
}

// adoptAgentState attaches tasks that agents reported for a framework the
// master did not know (re-registration after master failover).
func (m *Master) adoptAgentState(fw *framework) {
	for aid, ag := range m.agents {
		if execs, ok := ag.executors[fw.id]; ok {
			fw.executors[aid] = execs
		}
	}
	for _, t := range m.orphanTasks[fw.id] {
		fw.tasks[t.TaskID.Value] = t
	}
	delete(m.orphanTasks, fw.id)
}

// disconnected handles the end of a subscription stream.
func (m *Master) disconnected(fwID string, gen int, stream *wire.Stream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fw := m.frameworks[fwID]
	if fw == nil || fw.generation != gen || fw.conn != stream {
		return // already failed over or removed
	}
	fw.conn = nil
	m.alloc.SetFrameworkActive(fwID, false)
	for _, o := range fw.offers {
		m.removeOffer(o, 0)
	}
	if !m.elected || m.ctx.Err() != nil {
		return
	}
	timeout := time.Duration(fw.info.GetFailoverTimeout() * float64(time.Second))
	klog.InfoS("Framework disconnected", "framework", fwID, "failoverTimeout", timeout)
	fw.failoverTimer = time.AfterFunc(timeout, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		cur := m.frameworks[fwID]
		if cur == nil || cur.generation != gen || cur.conn != nil {
			return
		}
		klog.InfoS("Framework failover timeout, removing framework", "framework", fwID)
		m.removeFramework(cur)
	})
}

// removeFramework tears a framework down: its tasks are killed on the agents and it may never come back.
func (m *Master) removeFramework(fw *framework) {
	if fw.conn != nil {
		fw.conn.Close()
		fw.conn = nil
	}
	if fw.failoverTimer != nil {
		fw.failoverTimer.Stop()
	}
	for _, o := range fw.offers {
		m.removeOffer(o, 0)
	}
	for _, ag := range m.agents {
		if !ag.unreachable {
			ag.conn.ShutdownFramework(fw.id)
		}
		delete(ag.executors, fw.id)
	}
	for _, t := range fw.tasks {
		fw.completedTasks = append(fw.completedTasks, *t)
	}
	fw.tasks = map[string]*mesos.Task{}
	m.alloc.RemoveFramework(fw.id)
	delete(m.frameworks, fw.id)
	fw.generation++
	m.completedFrameworks[fw.id] = fw
	klog.InfoS("Framework removed", "framework", fw.id)
}

func (m *Master) dispatch(fwID string, call *scheduler.Call) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fw := m.frameworks[fwID]
	if fw == nil {
		return
	}
	klog.V(3).InfoS("Scheduler call", "framework", fwID, "type", call.Type)
	switch call.Type {
	case scheduler.Call_TEARDOWN:
		m.removeFramework(fw)
	case scheduler.Call_ACCEPT:
		m.accept(fw, call.Accept)
	case scheduler.Call_DECLINE:
		refuse := refuseDuration(call.Decline.Filters)
		for _, id := range call.Decline.OfferIDs {
			if o := fw.offers[id.Value]; o != nil {
				m.removeOffer(o, refuse)
			}
		}
	case scheduler.Call_REVIVE:
		m.alloc.Revive(fw.id, call.Revive.GetRoles())
		m.triggerAllocation()
	case scheduler.Call_SUPPRESS:
		m.alloc.Suppress(fw.id, call.Suppress.GetRoles())
	case scheduler.Call_KILL:
		m.kill(fw, call.Kill)
	case scheduler.Call_SHUTDOWN:
		if ag := m.agents[call.Shutdown.AgentID.Value]; ag != nil && !ag.unreachable {
			ag.conn.ShutdownExecutor(fw.id, call.Shutdown.ExecutorID.Value)
		}
	case scheduler.Call_ACKNOWLEDGE:
		m.acknowledge(fw, call.Acknowledge)
	case scheduler.Call_RECONCILE:
		m.reconcile(fw, call.Reconcile.Tasks)
	case scheduler.Call_MESSAGE:
		if ag := m.agents[call.Message.AgentID.Value]; ag != nil && !ag.unreachable {
			ag.conn.FrameworkMessage(fw.id, call.Message.ExecutorID.Value, call.Message.Data)
		}
	case scheduler.Call_UPDATE_FRAMEWORK:
		info := call.UpdateFramework.FrameworkInfo
		if err := validateFrameworkInfo(&info); err != nil {
			fw.conn.Send(errorEvent(err.Error()))
			return
		}
		fw.apply(info)
		m.alloc.AddFramework(fw.id, fw.roles, call.UpdateFramework.SuppressedRoles)
		m.alloc.SetGPUAware(fw.id, hasCapability(&fw.info, mesos.FrameworkInfo_Capability_GPU_RESOURCES))
		m.triggerAllocation()
	case scheduler.Call_ACCEPT_INVERSE_OFFERS, scheduler.Call_DECLINE_INVERSE_OFFERS,
		scheduler.Call_REQUEST, scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS, scheduler.Call_RECONCILE_OPERATIONS:
		// Accepted and ignored: the sim makes no inverse offers and runs no
		// operations with feedback, so there is nothing to act on.
	}
}

func refuseDuration(f *mesos.Filters) time.Duration {
	secs := DefaultRefuseSeconds
	if f != nil && f.RefuseSeconds != nil {
		secs = *f.RefuseSeconds
	}
	if secs < 0 {
		secs = 0
	}
	return time.Duration(secs * float64(time.Second))
}

func (m *Master) kill(fw *framework, k *scheduler.Call_Kill) {
	t := fw.tasks[k.TaskID.Value]
	if t == nil {
		// An unknown task is answered by reconciliation, as the real master does.
		rt := scheduler.Call_Reconcile_Task{TaskID: k.TaskID, AgentID: k.AgentID}
		m.reconcile(fw, []scheduler.Call_Reconcile_Task{rt})
		return
	}
	if k.AgentID != nil && k.AgentID.Value != t.AgentID.Value {
		return
	}
	if ag := m.agents[t.AgentID.Value]; ag != nil && !ag.unreachable {
		ag.conn.KillTask(fw.id, t.TaskID.Value, k.KillPolicy)
	}
}

func (m *Master) acknowledge(fw *framework, a *scheduler.Call_Acknowledge) {
	if t := fw.tasks[a.TaskID.Value]; t != nil && string(t.StatusUpdateUUID) == string(a.UUID) &&
		t.StatusUpdateState != nil && isTerminal(*t.StatusUpdateState) {
		m.removeTask(fw, t)
	}
	if ag := m.agents[a.AgentID.Value]; ag != nil && !ag.unreachable {
		ag.conn.AcknowledgeUpdate(fw.id, a.TaskID.Value, a.UUID)
	}
}

func (m *Master) removeTask(fw *framework, t *mesos.Task) {
	delete(fw.tasks, t.TaskID.Value)
	fw.completedTasks = append(fw.completedTasks, *t)
	const maxCompleted = 1000
	if n := len(fw.completedTasks); n > maxCompleted {
		fw.completedTasks = fw.completedTasks[n-maxCompleted:]
	}
}

func isTerminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_ERROR,
		mesos.TASK_LOST, mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}

// masterUpdate builds a master-generated status: no uuid, so no acknowledgement is expected.
func masterUpdate(taskID mesos.TaskID, agentID *mesos.AgentID, executorID *mesos.ExecutorID, state mesos.TaskState, msg string, reason mesos.TaskStatus_Reason) mesos.TaskStatus {
	src := mesos.SOURCE_MASTER
	now := float64(time.Now().UnixNano()) / 1e9
	st := mesos.TaskStatus{TaskID: taskID, State: &state, Message: &msg, Source: &src, Reason: &reason, Timestamp: &now, ExecutorID: executorID}
	if agentID != nil && agentID.Value != "" {
		a := *agentID
		st.AgentID = &a
	}
	return st
}

func (m *Master) sendUpdate(fw *framework, st mesos.TaskStatus) {
	if m.heldUpdates != nil {
		m.heldUpdates[fw.id] = append(m.heldUpdates[fw.id], st)
		return
	}
	if fw.conn != nil {
		fw.conn.Send(&scheduler.Event{Type: scheduler.Event_UPDATE, Update: &scheduler.Event_Update{Status: st}})
	}
}

func (m *Master) reconcile(fw *framework, tasks []scheduler.Call_Reconcile_Task) {
	latest := func(t *mesos.Task) mesos.TaskStatus {
		state := t.GetState()
		if t.StatusUpdateState != nil {
			state = *t.StatusUpdateState
		}
		aid := t.AgentID
		st := masterUpdate(t.TaskID, &aid, t.ExecutorID, state, "Reconciliation: Latest task state", mesos.REASON_RECONCILIATION)
		// Carry the health and container status of the last update, without its uuid.
		if n := len(t.Statuses); n > 0 {
			last := t.Statuses[n-1]
			st.Healthy = last.Healthy
			st.ContainerStatus = last.ContainerStatus
			st.Data = last.Data
		}
		return st
	}
	if len(tasks) == 0 {
		for _, t := range fw.tasks {
			m.sendUpdate(fw, latest(t))
		}
		return
	}
	for _, rt := range tasks {
		if t := fw.tasks[rt.TaskID.Value]; t != nil {
			m.sendUpdate(fw, latest(t))
			continue
		}
		aid := rt.AgentID
		var state mesos.TaskState
		var msg string
		switch {
		case aid != nil && m.agents[aid.Value] != nil && !m.agents[aid.Value].unreachable:
			state, msg = mesos.TASK_GONE, "Reconciliation: Task is unknown to the agent"
		case aid != nil && m.agents[aid.Value] != nil:
			state, msg = mesos.TASK_UNREACHABLE, "Reconciliation: Task is unreachable"
		default:
			state, msg = mesos.TASK_UNKNOWN, "Reconciliation: Task is unknown"
		}
		if !fw.partAware {
			state = mesos.TASK_LOST
		}
		m.sendUpdate(fw, masterUpdate(rt.TaskID, aid, nil, state, msg, mesos.REASON_RECONCILIATION))
	}
}
