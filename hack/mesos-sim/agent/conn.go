package agent

import (
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/executor"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/master"
)

// conn is the master's view of the agent. Messages to a partitioned or
// stopped agent are lost, as they would be on the network.
type conn Agent

var _ master.AgentConn = (*conn)(nil)

func (c *conn) agent() *Agent { return (*Agent)(c) }

func (c *conn) reachable() bool {
	a := c.agent()
	return !a.partitioned.Load() && a.ctx.Err() == nil
}

func (c *conn) Ping() bool { return c.reachable() }

// post delivers f to the agent after the caller returns, in the order
// posted: the real master sends RunTaskMessage and the others as libprocess
// messages and never waits for the agent, so an ACCEPT is answered before
// the agent starts (or checkpoints) anything. A message sent to a
// partitioned agent is lost; one sent before a partition still arrives, as
// it did when delivery was synchronous.
func (c *conn) post(f func(a *Agent)) {
	if !c.reachable() {
		return
	}
	a := c.agent()
	a.mailMu.Lock()
	a.mailbox = append(a.mailbox, f)
	start := !a.delivering
	a.delivering = true
	a.mailMu.Unlock()
	if start {
		go a.deliver()
	}
}

// deliver runs the agent's mailbox until it is empty.
func (a *Agent) deliver() {
	for {
		a.mailMu.Lock()
		if len(a.mailbox) == 0 {
			a.delivering = false
			a.mailMu.Unlock()
			return
		}
		f := a.mailbox[0]
		a.mailbox[0] = nil
		a.mailbox = a.mailbox[1:]
		a.mailMu.Unlock()
		if a.ctx.Err() == nil {
			f(a)
		}
	}
}

func (c *conn) RunTask(fw mesos.FrameworkInfo, exec *mesos.ExecutorInfo, task *mesos.TaskInfo, group *mesos.TaskGroupInfo) {
	c.post(func(a *Agent) { a.runTask(fw, exec, task, group) })
}

func (c *conn) KillTask(fwID, taskID string, policy *mesos.KillPolicy) {
	c.post(func(a *Agent) { a.killTask(fwID, taskID, policy) })
}

func (c *conn) ShutdownExecutor(fwID, execID string) {
	c.post(func(a *Agent) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if fw := a.frameworks[fwID]; fw != nil {
			if e := fw.executors[execID]; e != nil {
				a.shutdownExecutorLocked(e)
			}
		}
	})
}

func (c *conn) ShutdownFramework(fwID string) {
	c.post(func(a *Agent) { a.shutdownFramework(fwID) })
}

func (a *Agent) shutdownFramework(fwID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil {
		return
	}
	fw.terminating = true
	for _, e := range fw.executors {
		a.shutdownExecutorLocked(e)
	}
	// Nobody will acknowledge updates of a removed framework.
	for key, s := range a.updates {
		if s.fw == fwID {
			if s.timer != nil {
				s.timer.Stop()
			}
			delete(a.updates, key)
		}
	}
	for _, e := range fw.executors {
		a.maybeRemoveExecutorLocked(e)
	}
}

func (c *conn) AcknowledgeUpdate(fwID, taskID string, uuid []byte) {
	c.post(func(a *Agent) { a.acknowledge(fwID, taskID, uuid) })
}

func (c *conn) FrameworkMessage(fwID, execID string, data []byte) {
	c.post(func(a *Agent) {
		a.mu.Lock()
		defer a.mu.Unlock()
		if fw := a.frameworks[fwID]; fw != nil {
			if e := fw.executors[execID]; e != nil && e.stream != nil {
				e.stream.Send(&executor.Event{Type: executor.Event_MESSAGE, Message: &executor.Event_Message{Data: data}})
			}
		}
	})
}

func (a *Agent) runTask(fwInfo mesos.FrameworkInfo, exec *mesos.ExecutorInfo, task *mesos.TaskInfo, group *mesos.TaskGroupInfo) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fwID := fwInfo.GetID().GetValue()
	fw := a.frameworks[fwID]
	if fw == nil {
		fw = &frameworkState{id: fwID, executors: map[string]*executorRun{}}
		a.frameworks[fwID] = fw
	}
	fw.info = fwInfo
	fw.terminating = false
	kind := kindCustom
	if exec == nil {
		kind = kindCommand
		exec = commandExecutorInfo(fwID, task)
	} else if exec.GetType() == mesos.ExecutorInfo_DEFAULT {
		kind = kindDefault
	}
	if a.cfg.Hollow {
		kind = kindHollow
	}
	var tasks []mesos.TaskInfo
	if group != nil {
		tasks = group.Tasks
	} else {
		tasks = []mesos.TaskInfo{*task}
	}
	e := fw.executors[exec.ExecutorID.Value]
	if e != nil && (e.state == terminating || e.state == terminated) {
		for _, t := range tasks {
			a.statusUpdateLocked(fwID, e, a.newStatus(t.TaskID, exec.ExecutorID.Value, lostOrDropped(fwInfo), mesos.SOURCE_AGENT,
				reasonPtr(mesos.REASON_EXECUTOR_TERMINATED), "Executor terminating"))
		}
		return
	}
	if e == nil {
		e = &executorRun{info: *exec, fw: fw, kind: kind, containerID: newContainerID(),
			tasks: map[string]*mesos.Task{}, taskInfos: map[string]mesos.TaskInfo{}, killing: map[string]bool{}}
		fw.executors[exec.ExecutorID.Value] = e
	}
	for _, t := range tasks {
		state := mesos.TASK_STAGING
		eid := e.info.ExecutorID
		e.tasks[t.TaskID.Value] = &mesos.Task{Name: t.Name, TaskID: t.TaskID, FrameworkID: mesos.FrameworkID{Value: fwID},
			ExecutorID: &eid, AgentID: mesos.AgentID{Value: a.id}, State: &state, Resources: t.Resources, Labels: t.Labels}
		e.taskInfos[t.TaskID.Value] = t
	}
	l := launch{task: task, group: group}
	switch {
	case e.state == running && e.stream != nil:
		a.sendLaunchLocked(e, l)
	case e.pid == 0 && !e.fetching && e.kind == kindCustom:
		e.queued = append(e.queued, l)
		if err := a.startExecutorLocked(e); err != nil {
			klog.ErrorS(err, "Launching executor", "framework", fwID, "executor", exec.ExecutorID.Value)
			a.executorTerminatedLocked(e, -1, mesos.REASON_EXECUTOR_TERMINATED, "Failed to launch executor: "+err.Error())
			return
		}
	case e.kind == kindCustom:
		e.queued = append(e.queued, l)
	case e.kind == kindHollow:
		e.state = running
		// A real agent checkpoints the executor and its tasks before it
		// starts them; written after the updates, a scheduler could see
		// TASK_RUNNING of a task the agent would not recover.
		a.checkpoint(e)
		for _, t := range tasks {
			a.statusUpdateLocked(fwID, e, a.newStatus(t.TaskID, e.info.ExecutorID.Value, mesos.TASK_RUNNING, mesos.SOURCE_EXECUTOR, nil, ""))
		}
	case e.kind == kindCommand:
		a.startCommandLocked(e, *task)
	case e.kind == kindDefault:
		a.launchDefaultLocked(e, tasks)
	}
	a.checkpoint(e)
}

func lostOrDropped(fw mesos.FrameworkInfo) mesos.TaskState {
	for _, c := range fw.Capabilities {
		if c.Type == mesos.FrameworkInfo_Capability_PARTITION_AWARE {
			return mesos.TASK_DROPPED
		}
	}
	return mesos.TASK_LOST
}

func (a *Agent) sendLaunchLocked(e *executorRun, l launch) {
	e.sentTask = true
	if l.group != nil {
		e.stream.Send(&executor.Event{Type: executor.Event_LAUNCH_GROUP, LaunchGroup: &executor.Event_LaunchGroup{TaskGroup: *l.group}})
		return
	}
	e.stream.Send(&executor.Event{Type: executor.Event_LAUNCH, Launch: &executor.Event_Launch{Task: *l.task}})
}

func (a *Agent) killTask(fwID, taskID string, policy *mesos.KillPolicy) {
	a.mu.Lock()
	defer a.mu.Unlock()
	fw := a.frameworks[fwID]
	if fw == nil {
		return
	}
	for _, e := range fw.executors {
		t := e.tasks[taskID]
		if t == nil || isTerminal(t.GetState()) {
			continue
		}
		switch {
		case e.kind == kindHollow:
			a.statusUpdateLocked(fwID, e, a.newStatus(t.TaskID, e.info.ExecutorID.Value, mesos.TASK_KILLED, mesos.SOURCE_EXECUTOR, nil, ""))
		case e.kind == kindCommand:
			e.killing[taskID] = true
			a.killCommandLocked(e, policy)
		case e.kind == kindDefault:
			if c := e.children[taskID]; c != nil {
				a.killChildLocked(e, c, policy)
			}
		case e.state == running && e.stream != nil:
			e.killing[taskID] = true
			e.stream.Send(&executor.Event{Type: executor.Event_KILL, Kill: &executor.Event_Kill{TaskID: t.TaskID, KillPolicy: policy}})
		default:
			// Not yet handed to the executor: the agent kills it itself.
			kept := e.queued[:0]
			for _, l := range e.queued {
				if l.task != nil && l.task.TaskID.Value == taskID {
					continue
				}
				kept = append(kept, l)
			}
			e.queued = kept
			a.statusUpdateLocked(fwID, e, a.newStatus(t.TaskID, e.info.ExecutorID.Value, mesos.TASK_KILLED, mesos.SOURCE_AGENT,
				reasonPtr(mesos.REASON_TASK_KILLED_DURING_LAUNCH), "Killed before delivery to the executor"))
			if len(e.queued) == 0 && !e.sentTask && e.state == registering {
				a.shutdownExecutorLocked(e)
			}
		}
		return
	}
}

// shutdownExecutorLocked asks the executor to shut down and kills it after
// its grace period, as the agent does with SHUTDOWN then SIGKILL.
func (a *Agent) shutdownExecutorLocked(e *executorRun) {
	if e.state == terminating || e.state == terminated {
		return
	}
	e.state = terminating
	switch e.kind {
	case kindHollow:
		a.executorTerminatedLocked(e, 0, mesos.REASON_EXECUTOR_TERMINATED, "Executor shut down")
		return
	case kindCommand:
		a.killCommandLocked(e, nil)
		return
	case kindDefault:
		a.shutdownDefaultLocked(e)
		return
	}
	if e.stream != nil {
		e.stream.Send(&executor.Event{Type: executor.Event_SHUTDOWN})
	}
	grace := a.gracePeriod(e)
	pid := e.pid
	if e.timer != nil {
		e.timer.Stop()
	}
	e.timer = time.AfterFunc(grace, func() {
		klog.InfoS("Killing executor after shutdown grace period", "executor", e.info.ExecutorID.Value, "grace", grace)
		killGroup(pid, 9)
	})
	if pid == 0 {
		a.executorTerminatedLocked(e, -1, mesos.REASON_EXECUTOR_TERMINATED, "Executor shut down")
	}
}

func (a *Agent) gracePeriod(e *executorRun) time.Duration {
	if gp := e.info.GetShutdownGracePeriod(); gp != nil {
		return time.Duration(gp.Nanoseconds)
	}
	return a.cfg.ExecutorShutdownGracePeriod
}

// executorTerminatedLocked fails whatever the executor left unfinished and tells the master.
func (a *Agent) executorTerminatedLocked(e *executorRun, status int, reason mesos.TaskStatus_Reason, msg string) {
	if e.state == terminated {
		return
	}
	wasTerminating := e.state == terminating
	e.state = terminated
	if e.stream != nil {
		e.stream.Close()
		e.stream = nil
	}
	if e.timer != nil {
		e.timer.Stop()
	}
	for id, t := range e.tasks {
		if isTerminal(t.GetState()) {
			continue
		}
		state := mesos.TASK_FAILED
		// A custom executor's leftovers are failed, as in the real agent; the
		// agent itself plays hollow and command executors, which do kill.
		if e.kind != kindCustom && (e.killing[id] || wasTerminating) {
			state = mesos.TASK_KILLED
		}
		r, m := reason, msg
		if p := e.pendingTermination; p != nil {
			state, r, m = p.state, p.reason, p.message
		}
		a.statusUpdateLocked(e.fw.id, e, a.newStatus(t.TaskID, e.info.ExecutorID.Value, state, mesos.SOURCE_AGENT, reasonPtr(r), m))
	}
	e.queued = nil
	a.checkpoint(e)
	if id, fid, eid := a.id, e.fw.id, e.info.ExecutorID.Value; !a.partitioned.Load() && a.connected {
		go a.link.ExecutorExited(id, fid, eid, int32(status))
	}
	klog.InfoS("Executor terminated", "framework", e.fw.id, "executor", e.info.ExecutorID.Value, "status", status)
	a.maybeRemoveExecutorLocked(e)
}
