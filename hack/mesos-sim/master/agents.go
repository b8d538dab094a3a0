package master

import (
	"context"

	"fmt"
	"github.com/google/uuid"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	operator "github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"k8s.io/klog/v2"
)

// RegisterAgent (re-)registers an agent. An agent without an id gets a new
// one; an agent with an id the master knows or does not know (master
// failover) keeps it, and the tasks it reports are adopted.
func (m *Master) RegisterAgent(reg AgentRegistration, conn AgentConn) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.elected {
		return "", fmt.Errorf("registering agent %s: master %s is not the leader", reg.Info.Hostname, m.cfg.ID)
	}
	info := reg.Info
	if info.ID == nil || info.ID.Value == "" {
		id := mesos.AgentID{Value: fmt.Sprintf("%s-S%d", m.cfg.ID, m.nextAgent)}
		m.nextAgent++
		info.ID = &id
	}
	aid := info.ID.Value
	if m.gone[aid] {
		// The real master tells such an agent to shut down.
		return "", fmt.Errorf("agent %s (%s) was marked gone by an operator: it may not register again", aid, info.Hostname)
	}
	wasUnreachable := false
	if old := m.agents[aid]; old != nil {
		wasUnreachable = old.unreachable
		// Re-registration: offers on the old incarnation are void.
		for _, o := range m.offers {
			if o.agent == aid {
				m.rescind(o)
			}
		}
		m.alloc.RemoveAgent(aid)
	}
	ag := &agentEntry{info: info, pid: reg.PID, ip: reg.IP, port: reg.Port, conn: conn, registered: time.Now(),
		executors: map[string]map[string]mesos.ExecutorInfo{}}
	for _, e := range reg.Executors {
		fid := e.GetFrameworkID().GetValue()
		if ag.executors[fid] == nil {
			ag.executors[fid] = map[string]mesos.ExecutorInfo{}
		}
		ag.executors[fid][e.ExecutorID.Value] = e
		if fw := m.frameworks[fid]; fw != nil {
			if fw.executors[aid] == nil {
				fw.executors[aid] = map[string]mesos.ExecutorInfo{}
			}
			fw.executors[aid][e.ExecutorID.Value] = e
		}
	}
	used := map[string]mesos.Resources{}
	for i := range reg.Tasks {
		t := reg.Tasks[i]
		fid := t.FrameworkID.Value
		if t.State != nil && isTerminal(*t.State) {
			continue
		}
		if fw := m.frameworks[fid]; fw != nil && wasUnreachable && !fw.partAware {
			// Tasks of frameworks that are not partition-aware were already
			// reported lost; the master kills them when the agent comes back.
			conn.KillTask(fid, t.TaskID.Value, nil)
			continue
		}
		used[fid] = used[fid].Plus(internalFormat(t.Resources)...)
		if fw := m.frameworks[fid]; fw != nil {
			if cur := fw.tasks[t.TaskID.Value]; cur == nil || cur.AgentID.Value == aid {
				fw.tasks[t.TaskID.Value] = &t
			}
			if wasUnreachable {
				m.announceReregistered(fw, &t)
			}
		} else if _, gone := m.completedFrameworks[fid]; gone {
			conn.ShutdownFramework(fid)
		} else {
			m.orphanTasks[fid] = append(m.orphanTasks[fid], &t)
		}
	}
	for fid, execs := range ag.executors {
		for _, e := range execs {
			used[fid] = used[fid].Plus(internalFormat(e.Resources)...)
		}
	}
	if old := m.agents[aid]; old != nil && !wasUnreachable {
		m.reconcileKnownAgent(aid, reg.Tasks)
	} else if wasUnreachable {
		m.forgetUnreported(aid, reg.Tasks)
	}
	_, known := m.agents[aid]
	m.agents[aid] = ag
	m.alloc.AddAgent(aid, internalFormat(info.Resources), used)
	if !known || wasUnreachable {
		m.publishLocked(&operator.Event{Type: operator.Event_AGENT_ADDED, AgentAdded: &operator.Event_AgentAdded{Agent: m.agentInfoLocked(ag)}})
	}
	klog.InfoS("Agent registered", "agent", aid, "hostname", info.Hostname, "tasks", len(reg.Tasks))
	m.triggerAllocation()
	return aid, nil
}

// reconcileKnownAgent reports tasks the master placed on a re-registering
// agent that the agent no longer knows. The real master asks the agent, which
// answers TASK_LOST (TASK_DROPPED when partition-aware) outside its status
// update manager; the answer is produced here with the same content.
func (m *Master) reconcileKnownAgent(aid string, reported []mesos.Task) {
	known := reportedTasks(reported)
	for _, fw := range m.frameworks {
		for _, t := range fw.tasks {
			if t.AgentID.Value != aid || known[fw.id+"/"+t.TaskID.Value] || isTerminal(t.GetState()) {
				continue
			}
			state := mesos.TASK_LOST
			if fw.partAware {
				state = mesos.TASK_DROPPED
			}
			st := masterUpdate(t.TaskID, &t.AgentID, t.ExecutorID, state, "Reconciliation: task unknown to the agent", mesos.REASON_RECONCILIATION)
			src := mesos.SOURCE_AGENT
			st.Source = &src
			st.UUID, _ = uuid.New().MarshalBinary()
			t.State = &state
			t.StatusUpdateState = &state
			t.StatusUpdateUUID = st.UUID
			t.Statuses = append(t.Statuses, st)
			m.alloc.Recover(fw.id, aid, internalFormat(t.Resources), 0, time.Now())
			m.sendUpdate(fw, st)
		}
	}
}

// announceReregistered tells a framework that a task of an unreachable agent
// is back, in the state the agent reports. Mesos 1.11 does the same in
// Master::__reregisterSlave (src/master/master.cpp, tag 1.11.0, lines
// 7010-7081): each reported task is erased from the framework's unreachable
// tasks and a master-sourced update without uuid is forwarded to it, reason
// REASON_SLAVE_REREGISTERED (REASON_AGENT_REREGISTERED in the v1 API),
// message "Unreachable agent re-reregistered".
func (m *Master) announceReregistered(fw *framework, t *mesos.Task) {
	st := masterUpdate(t.TaskID, &t.AgentID, t.ExecutorID, t.GetState(), "Unreachable agent re-reregistered", mesos.REASON_AGENT_REREGISTERED)
	if n := len(t.Statuses); n > 0 {
		last := t.Statuses[n-1]
		st.Healthy = last.Healthy
		st.ContainerStatus = last.ContainerStatus
	}
	m.sendUpdate(fw, st)
}

// forgetUnreported drops the unreachable tasks of a re-registering agent that
// the agent does not report (a launch that never reached it). Mesos 1.11's
// Master::__reregisterSlave (master.cpp, tag 1.11.0, lines 7083-7098) erases
// every unreachable task of the agent from its frameworks without a status
// update; the framework learns the task's fate by explicit reconciliation,
// which answers TASK_GONE (TASK_LOST when not partition-aware) for a task
// unknown on a registered agent (Master::reconcileTasks case (3), lines
// 9056-9074). Before, the task stayed TASK_UNREACHABLE for good and so did
// reconciliation's answer. Unlike an agent the master still knew
// (reconcileKnownAgent), no TASK_DROPPED is sent.
func (m *Master) forgetUnreported(aid string, reported []mesos.Task) {
	known := reportedTasks(reported)
	for _, fw := range m.frameworks {
		for id, t := range fw.tasks {
			if t.AgentID.Value == aid && t.GetState() == mesos.TASK_UNREACHABLE && !known[fw.id+"/"+id] {
				delete(fw.tasks, id)
			}
		}
	}
}

// reportedTasks keys the tasks an agent reports by framework and task id.
func reportedTasks(reported []mesos.Task) map[string]bool {
	known := make(map[string]bool, len(reported))
	for _, t := range reported {
		known[t.FrameworkID.Value+"/"+t.TaskID.Value] = true
	}
	return known
}

// UnregisterAgent removes an agent that shut down cleanly: its tasks are gone.
func (m *Master) UnregisterAgent(agentID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ag := m.agents[agentID]
	if ag == nil {
		return
	}
	m.loseAgent(ag, false)
	delete(m.agents, agentID)
	m.publishLocked(&operator.Event{Type: operator.Event_AGENT_REMOVED, AgentRemoved: &operator.Event_AgentRemoved{AgentID: mesos.AgentID{Value: agentID}}})
	m.alloc.RemoveAgent(agentID)
}

// loseAgent rescinds the agent's offers, reports its tasks and sends FAILURE.
func (m *Master) loseAgent(ag *agentEntry, unreachable bool) {
	aid := ag.info.ID.Value
	for _, o := range m.offers {
		if o.agent == aid {
			m.rescind(o)
		}
	}
	ag.unreachable = true
	m.alloc.SetAgentActive(aid, false)
	for _, fw := range m.frameworks {
		now := mesos.TimeInfo{Nanoseconds: time.Now().UnixNano()}
		for _, t := range fw.tasks {
			if t.AgentID.Value != aid {
				continue
			}
			state, reason, msg := mesos.TASK_LOST, mesos.REASON_AGENT_REMOVED, "Agent "+ag.info.Hostname+" removed"
			if unreachable {
				reason, msg = mesos.REASON_AGENT_REMOVED, "Agent "+ag.info.Hostname+" is unreachable"
				if fw.partAware {
					state = mesos.TASK_UNREACHABLE
				}
			} else if fw.partAware {
				state = mesos.TASK_GONE
			}
			st := masterUpdate(t.TaskID, &t.AgentID, t.ExecutorID, state, msg, reason)
			if unreachable {
				st.UnreachableTime = &now
			}
			// A task whose end the agent reported keeps it as its latest
			// state (Master::updateTask never overwrites a terminal one): it
			// is not running, whatever the agent's reachability.
			if !isTerminal(t.GetState()) {
				t.State = &state
			}
			t.StatusUpdateState = &state
			t.StatusUpdateUUID = nil
			t.Statuses = append(t.Statuses, st)
			m.sendUpdate(fw, st)
			if state != mesos.TASK_UNREACHABLE {
				m.removeTask(fw, t)
			}
		}
		delete(fw.executors, aid)
		if fw.conn != nil {
			a := *ag.info.ID
			fw.conn.Send(&scheduler.Event{Type: scheduler.Event_FAILURE, Failure: &scheduler.Event_Failure{AgentID: &a}})
		}
	}
	klog.InfoS("Agent lost", "agent", aid, "unreachable", unreachable)
}

// MarkAgentGone is the operator's MARK_AGENT_GONE (Master::markAgentGone):
// the agent, registered or unreachable, is gone for good. Its tasks end
// TASK_GONE_BY_OPERATOR (TASK_LOST for frameworks that are not
// partition-aware, REASON_AGENT_REMOVED_BY_OPERATOR), frameworks get a
// FAILURE for it, its executors are shut down, and it may never register
// again. A second mark of the same agent is fine.
func (m *Master) MarkAgentGone(agentID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gone[agentID] {
		return nil
	}
	ag := m.agents[agentID]
	if ag == nil {
		return fmt.Errorf("agent %s is not known", agentID)
	}
	for _, o := range m.offers {
		if o.agent == agentID {
			m.rescind(o)
		}
	}
	for _, fw := range m.frameworks {
		for _, t := range fw.tasks {
			if t.AgentID.Value != agentID || isTerminal(t.GetState()) {
				continue
			}
			state := mesos.TASK_LOST
			if fw.partAware {
				state = mesos.TASK_GONE_BY_OPERATOR
			}
			st := masterUpdate(t.TaskID, &t.AgentID, t.ExecutorID, state, "Agent "+ag.info.Hostname+" marked gone by an operator", mesos.REASON_AGENT_REMOVED_BY_OPERATOR)
			t.State = &state
			t.StatusUpdateState = &state
			t.StatusUpdateUUID = nil
			t.Statuses = append(t.Statuses, st)
			m.sendUpdate(fw, st)
			m.removeTask(fw, t)
		}
		delete(fw.executors, agentID)
		if !ag.unreachable && fw.conn != nil {
			a := *ag.info.ID
			fw.conn.Send(&scheduler.Event{Type: scheduler.Event_FAILURE, Failure: &scheduler.Event_Failure{AgentID: &a}})
		}
		if ag.conn != nil {
			ag.conn.ShutdownFramework(fw.id)
		}
	}
	m.gone[agentID] = true
	delete(m.agents, agentID)
	m.alloc.RemoveAgent(agentID)
	m.publishLocked(&operator.Event{Type: operator.Event_AGENT_REMOVED, AgentRemoved: &operator.Event_AgentRemoved{AgentID: mesos.AgentID{Value: agentID}}})
	klog.InfoS("Agent marked gone by an operator", "agent", agentID, "hostname", ag.info.Hostname)
	return nil
}

// MarkAgentUnreachable makes the master treat an agent as failed its health checks now.
func (m *Master) MarkAgentUnreachable(agentID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ag := m.agents[agentID]; ag != nil && !ag.unreachable {
		m.loseAgent(ag, true)
	}
}

func (m *Master) healthLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.AgentPingTimeout)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		var check []*agentEntry
		if m.elected {
			for _, ag := range m.agents {
				if !ag.unreachable {
					check = append(check, ag)
				}
			}
		}
		m.mu.Unlock()
		for _, ag := range check {
			ok := ag.conn.Ping()
			m.mu.Lock()
			if ok {
				ag.missedPings = 0
			} else if ag.missedPings++; ag.missedPings >= m.cfg.MaxAgentPingTimeouts && !ag.unreachable && m.agents[ag.info.ID.Value] == ag {
				m.loseAgent(ag, true)
			}
			m.mu.Unlock()
		}
	}
}

// StatusUpdate receives an update forwarded by an agent's status update manager.
func (m *Master) StatusUpdate(agentID string, u StatusUpdate) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ag := m.agents[agentID]
	if ag == nil || ag.unreachable {
		return
	}
	fw := m.frameworks[u.FrameworkID]
	if fw == nil {
		return
	}
	st := u.Status
	t := fw.tasks[st.TaskID.Value]
	if t != nil {
		prevTerminal := t.State != nil && isTerminal(*t.State)
		if st.State != nil {
			s := *st.State
			// The latest state is what the agent knows; the update state is what is being delivered.
			if !prevTerminal {
				t.State = &s
			}
			t.StatusUpdateState = &s
		}
		t.StatusUpdateUUID = st.UUID
		// Master::updateTask: a status of the state the last one had
		// replaces it, and the master keeps no status's data.
		changed := true
		if n := len(t.Statuses); n > 0 && t.Statuses[n-1].GetState() == st.GetState() {
			t.Statuses = t.Statuses[:n-1]
			changed = false
		}
		kept := st
		kept.Data = nil
		t.Statuses = append(t.Statuses, kept)
		if changed {
			// Subscribers hear of every new state (TASK_UPDATED).
			state := t.GetState()
			m.publishLocked(&operator.Event{Type: operator.Event_TASK_UPDATED, TaskUpdated: &operator.Event_TaskUpdated{
				FrameworkID: t.FrameworkID, Status: kept, State: &state}})
		}
		if st.State != nil && isTerminal(*st.State) && !prevTerminal {
			m.alloc.Recover(fw.id, agentID, internalFormat(t.Resources), 0, time.Now())
		}
	}
	m.sendUpdate(fw, st)
}

// ExecutorExited reports an executor's termination; the framework gets FAILURE.
func (m *Master) ExecutorExited(agentID, frameworkID, executorID string, status int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ag := m.agents[agentID]
	if ag == nil {
		return
	}
	var res mesos.Resources
	if e, ok := ag.executors[frameworkID][executorID]; ok {
		res = internalFormat(e.Resources)
		delete(ag.executors[frameworkID], executorID)
	}
	fw := m.frameworks[frameworkID]
	if fw == nil {
		return
	}
	delete(fw.executors[agentID], executorID)
	m.alloc.Recover(frameworkID, agentID, res, 0, time.Now())
	if fw.conn != nil {
		a := mesos.AgentID{Value: agentID}
		e := mesos.ExecutorID{Value: executorID}
		fw.conn.Send(&scheduler.Event{Type: scheduler.Event_FAILURE, Failure: &scheduler.Event_Failure{AgentID: &a, ExecutorID: &e, Status: &status}})
	}
}

// ExecutorMessage forwards an executor's MESSAGE to its scheduler (best effort, as in Mesos).
func (m *Master) ExecutorMessage(agentID, frameworkID, executorID string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fw := m.frameworks[frameworkID]
	if fw == nil || fw.conn == nil {
		return
	}
	fw.conn.Send(&scheduler.Event{Type: scheduler.Event_MESSAGE, Message: &scheduler.Event_Message{
		AgentID: mesos.AgentID{Value: agentID}, ExecutorID: mesos.ExecutorID{Value: executorID}, Data: data,
	}})
}
