package agent

import (
	"errors"
	"net/http"

	"github.com/google/uuid"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/executor"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// MaxRequestSize bounds an executor call body.
const MaxRequestSize = 4 << 20

// Handler serves the agent's endpoints.
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/executor", a.serveExecutor)
	mux.HandleFunc("/api/v1", a.serveOperator)
	mux.HandleFunc("/slave(1)/api/v1", a.serveOperator)
	mux.HandleFunc("/slave(1)/api/v1/executor", a.serveExecutor)
	mux.HandleFunc("/state", a.serveState)
	mux.HandleFunc("/state.json", a.serveState)
	mux.HandleFunc("/slave(1)/state", a.serveState)
	mux.HandleFunc("/slave(1)/state.json", a.serveState)
	mux.HandleFunc("/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/slave(1)/health", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	return mux
}

func httpError(w http.ResponseWriter, code int, msg string) { wire.HTTPError(w, code, msg) }

func validateExecutorCall(c *executor.Call) error {
	if c.ExecutorID.Value == "" {
		return errors.New("Expecting 'executor_id' to be present")
	}
	if c.FrameworkID.Value == "" {
		return errors.New("Expecting 'framework_id' to be present")
	}
	switch c.Type {
	case executor.Call_SUBSCRIBE:
		if c.Subscribe == nil {
			return errors.New("Expecting 'subscribe' to be present")
		}
	case executor.Call_UPDATE:
		if c.Update == nil {
			return errors.New("Expecting 'update' to be present")
		}
		st := c.Update.Status
		if st.UUID == nil {
			return errors.New("Expecting 'uuid' to be present")
		}
		if _, err := uuid.FromBytes(st.UUID); err != nil {
			return errors.New("Not a valid UUID")
		}
		if st.ExecutorID != nil && st.ExecutorID.Value != c.ExecutorID.Value {
			return errors.New("ExecutorID in Call: " + c.ExecutorID.Value + " does not match ExecutorID in TaskStatus: " + st.ExecutorID.Value)
		}
		if st.GetSource() != mesos.SOURCE_EXECUTOR {
			return errors.New("Received Call from executor " + c.ExecutorID.Value + " of framework " + c.FrameworkID.Value + " with invalid source, expecting 'SOURCE_EXECUTOR'")
		}
		if st.GetState() == mesos.TASK_STAGING {
			return errors.New("Received TASK_STAGING from executor " + c.ExecutorID.Value + " of framework " + c.FrameworkID.Value + " which is not allowed")
		}
	case executor.Call_MESSAGE:
		if c.Message == nil {
			return errors.New("Expecting 'message' to be present")
		}
	}
	return nil
}

// serveExecutor follows the order of checks of the real agent's executor endpoint.
func (a *Agent) serveExecutor(w http.ResponseWriter, r *http.Request) {
	var call executor.Call
	if wire.ReadCall(w, r, MaxRequestSize, &call) == "" {
		return
	}
	if err := validateExecutorCall(&call); err != nil {
		httpError(w, http.StatusBadRequest, "Failed to validate Executor::Call: "+err.Error())
		return
	}
	var accept string
	switch call.Type {
	case executor.Call_SUBSCRIBE:
		var ok bool
		if accept, ok = wire.NegotiateStream(r.Header.Values("Accept")); !ok {
			httpError(w, http.StatusNotAcceptable, wire.NotAcceptableMessage)
			return
		}
	case executor.Call_HEARTBEAT:
		w.WriteHeader(http.StatusAccepted)
		return
	}
	a.mu.Lock()
	fw := a.frameworks[call.FrameworkID.Value]
	var e *executorRun
	if fw != nil {
		e = fw.executors[call.ExecutorID.Value]
	}
	switch {
	case fw == nil:
		a.mu.Unlock()
		httpError(w, http.StatusBadRequest, "Framework cannot be found")
		return
	case e == nil:
		a.mu.Unlock()
		httpError(w, http.StatusBadRequest, "Executor cannot be found")
		return
	case e.state == registering && call.Type != executor.Call_SUBSCRIBE:
		a.mu.Unlock()
		httpError(w, http.StatusForbidden, "Executor is not subscribed")
		return
	}
	switch call.Type {
	case executor.Call_SUBSCRIBE:
		stream := a.subscribeLocked(e, call.Subscribe, accept)
		a.mu.Unlock()
		w.Header().Set("Content-Type", accept)
		stream.Serve(r.Context(), w)
		a.executorDisconnected(e, stream)
		return
	case executor.Call_UPDATE:
		st := call.Update.Status
		eid := call.ExecutorID
		st.ExecutorID = &eid
		a.statusUpdateLocked(fw.id, e, st)
		// The update is safely with the status update manager: tell the executor.
		if e.stream != nil {
			e.stream.Send(&executor.Event{Type: executor.Event_ACKNOWLEDGED, Acknowledged: &executor.Event_Acknowledged{TaskID: st.TaskID, UUID: st.UUID}})
		}
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	case executor.Call_MESSAGE:
		id := a.id
		data := call.Message.Data
		if !a.partitioned.Load() && a.connected {
			go a.link.ExecutorMessage(id, fw.id, e.info.ExecutorID.Value, data)
		}
		a.mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	default:
		a.mu.Unlock()
		httpError(w, http.StatusNotImplemented, "")
	}
}

func (a *Agent) subscribeLocked(e *executorRun, sub *executor.Call_Subscribe, contentType string) *wire.Stream {
	stream := wire.NewStream(contentType, "")
	if e.state == terminating || e.state == terminated || e.fw.terminating {
		stream.Send(&executor.Event{Type: executor.Event_SHUTDOWN})
		stream.Close()
		return stream
	}
	if e.stream != nil {
		e.stream.Close()
	}
	wasRegistering := e.state == registering
	defer func() { e.recovered = false }()
	e.state = running
	e.stream = stream
	if e.timer != nil && wasRegistering {
		e.timer.Stop()
		e.timer = nil
	}
	for _, u := range sub.UnacknowledgedUpdates {
		st := u.Status
		eid := e.info.ExecutorID
		st.ExecutorID = &eid
		a.statusUpdateLocked(e.fw.id, e, st)
	}
	unacked := map[string]bool{}
	for _, t := range sub.UnacknowledgedTasks {
		unacked[t.TaskID.Value] = true
	}
	// Tasks sent to an executor before an agent restart that the executor
	// never saw are reported lost, as the real agent does; so are tasks
	// queued for a still-registering executor when the agent restarted (the
	// queue died with the agent, the tasks stayed STAGING in its checkpoint).
	if !wasRegistering || e.sentTask || e.recovered {
		for id, t := range e.tasks {
			if t.GetState() == mesos.TASK_STAGING && !unacked[id] && !a.isQueued(e, id) {
				a.statusUpdateLocked(e.fw.id, e, a.newStatus(t.TaskID, e.info.ExecutorID.Value, lostOrDropped(e.fw.info), mesos.SOURCE_AGENT,
					reasonPtr(mesos.REASON_AGENT_RESTARTED), "Task launched during agent restart"))
			}
		}
	}
	cid := mesos.ContainerID{Value: e.containerID}
	stream.Send(&executor.Event{Type: executor.Event_SUBSCRIBED, Subscribed: &executor.Event_Subscribed{
		ExecutorInfo: e.info, FrameworkInfo: e.fw.info, AgentInfo: a.info, ContainerID: &cid,
	}})
	for _, l := range e.queued {
		a.sendLaunchLocked(e, l)
	}
	e.queued = nil
	a.checkpoint(e)
	klog.InfoS("Executor subscribed", "framework", e.fw.id, "executor", e.info.ExecutorID.Value,
		"unacknowledgedTasks", len(sub.UnacknowledgedTasks), "unacknowledgedUpdates", len(sub.UnacknowledgedUpdates))
	return stream
}

func (a *Agent) isQueued(e *executorRun, taskID string) bool {
	for _, l := range e.queued {
		if l.task != nil && l.task.TaskID.Value == taskID {
			return true
		}
		if l.group != nil {
			for _, t := range l.group.Tasks {
				if t.TaskID.Value == taskID {
					return true
				}
			}
		}
	}
	return false
}

// executorDisconnected: a checkpointing framework's executor may reconnect
// (it keeps running through agent restarts); any other executor that drops
// its connection is shut down.
func (a *Agent) executorDisconnected(e *executorRun, stream *wire.Stream) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if e.stream != stream || a.ctx.Err() != nil {
		return
	}
	e.stream = nil
	if e.state != running {
		return
	}
	if e.fw.info.GetCheckpoint() {
		klog.InfoS("Executor disconnected, waiting for it to reconnect", "executor", e.info.ExecutorID.Value)
		return
	}
	klog.InfoS("Executor of a non-checkpointing framework disconnected, shutting it down", "executor", e.info.ExecutorID.Value)
	a.shutdownExecutorLocked(e)
}
