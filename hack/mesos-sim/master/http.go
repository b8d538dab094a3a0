package master

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// Handler serves the master's HTTP endpoints, routed as libprocess routes
// them: /master/<name> reaches the master's handler <name>; a path whose
// first component names no process (/state, /slaves, /api/v1/scheduler) goes
// to the delegate, the master; /version and /metrics/snapshot belong to
// their own processes. Trailing slashes and trailing components fall back
// to the longest handler name that matches, as ProcessBase::consume does.
func (m *Master) Handler() http.Handler {
	master := map[string]http.HandlerFunc{
		"api/v1/scheduler": m.authenticated(m.serveScheduler),
		"api/v1":           m.serveOperator,
		"state":            m.serveState,
		"state.json":       m.serveState,
		"state-summary":    m.serveStateSummary,
		"slaves":           m.serveStateKeys("slaves", "recovered_slaves"),
		"frameworks":       m.serveStateKeys("frameworks", "completed_frameworks", "unregistered_frameworks"),
		"tasks":            m.serveTasks,
		"tasks.json":       m.serveTasks,
		"roles":            m.serveRoles,
		"roles.json":       m.serveRoles,
		"flags":            m.serveFlags,
		"teardown":         m.serveTeardown,
		"health":           serveHealth,
		"redirect":         m.serveRedirect,
	}
	processes := map[string]map[string]http.HandlerFunc{
		"master":  master,
		"version": {"": serveVersion},
		"metrics": {"snapshot": m.serveMetrics},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := strings.Trim(r.URL.Path, "/")
		first, rest, _ := strings.Cut(path, "/")
		handlers, ok := processes[first]
		if !ok {
			handlers, rest = master, path
		}
		// The longest handler name that is a prefix (by components) of rest.
		name := rest
		for {
			if h, ok := handlers[name]; ok {
				h(w, r)
				return
			}
			i := strings.LastIndexByte(name, '/')
			if i < 0 {
				break
			}
			name = name[:i]
		}
		http.NotFound(w, r)
	})
}

func serveHealth(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }

func httpError(w http.ResponseWriter, code int, msg string) { wire.HTTPError(w, code, msg) }

// redirect answers a request made to a non-leading master: 307 with a
// scheme-relative Location so the client keeps its own scheme, or 503 when no
// leader is known at all.
func (m *Master) redirect(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	leader := m.leader
	m.mu.Unlock()
	if leader == nil {
		httpError(w, http.StatusServiceUnavailable, "No leader elected")
		return
	}
	host := leader.GetHostname()
	if host == "" && leader.Address != nil {
		host = leader.Address.GetIP()
	}
	base := "//" + host + ":" + strconv.Itoa(int(leader.GetPort()))
	switch p := strings.TrimRight(r.URL.Path, "/"); {
	case p == "/redirect" || p == "/master/redirect":
		w.Header().Set("Location", base)
	case strings.HasPrefix(p, "/redirect/") || strings.HasPrefix(p, "/master/redirect/"):
		http.NotFound(w, r)
		return
	default:
		w.Header().Set("Location", base+r.URL.RequestURI())
	}
	w.WriteHeader(http.StatusTemporaryRedirect)
}

func (m *Master) serveRedirect(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	leader := m.leader
	m.mu.Unlock()
	if leader != nil && leader.ID == m.cfg.ID {
		// The leader redirects to itself, as the real one does.
		w.Header().Set("Location", "//"+leader.GetHostname()+":"+strconv.Itoa(int(leader.GetPort())))
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	m.redirect(w, r)
}

// serveScheduler follows the order of checks in Master::Http::scheduler so a
// request with several faults gets the status code Mesos would give.
func (m *Master) serveScheduler(w http.ResponseWriter, r *http.Request) {
	if !m.Elected() {
		m.redirect(w, r)
		return
	}
	var call scheduler.Call
	if wire.ReadCall(w, r, m.cfg.MaxRequestSize, &call) == "" {
		return
	}
	principal := principalOf(r)
	if err := validateCall(&call, principal); err != nil {
		httpError(w, http.StatusBadRequest, "Failed to validate scheduler::Call: "+err.Error())
		return
	}

	if call.Type == scheduler.Call_SUBSCRIBE {
		accept, ok := wire.NegotiateStream(r.Header.Values("Accept"))
		if !ok {
			httpError(w, http.StatusNotAcceptable, wire.NotAcceptableMessage)
			return
		}
		if _, present := r.Header["Mesos-Stream-Id"]; present {
			httpError(w, http.StatusBadRequest, "Subscribe calls should not include the 'Mesos-Stream-Id' header")
			return
		}
		if info := call.Subscribe.FrameworkInfo; principal != "" && info.Principal == nil {
			// An authenticated framework may leave its principal out:
			// the master fills it in and authorizes with it.
			info.Principal = &principal
		}
		m.serveSubscribe(w, r, &call, accept)
		return
	}

	fwID := call.GetFrameworkID().GetValue()
	m.mu.Lock()
	fw := m.frameworks[fwID]
	var conn *wire.Stream
	if fw != nil {
		conn = fw.conn
	}
	hook := m.callHook
	m.mu.Unlock()
	if fw == nil {
		httpError(w, http.StatusBadRequest, "Framework cannot be found")
		return
	}
	if principal != "" && principal != fw.info.GetPrincipal() {
		httpError(w, http.StatusBadRequest, "Authenticated principal '"+principal+"' does not match principal '"+fw.info.GetPrincipal()+"' set in `FrameworkInfo`")
		return
	}
	if conn == nil {
		httpError(w, http.StatusForbidden, "Framework is not subscribed")
		return
	}
	streamID, present := r.Header["Mesos-Stream-Id"]
	if !present {
		httpError(w, http.StatusBadRequest, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
		return
	}
	if len(streamID) != 1 || streamID[0] != conn.ID {
		httpError(w, http.StatusBadRequest, "The stream ID '"+strings.Join(streamID, ",")+"' included in this request didn't match the stream ID currently associated with framework ID "+fwID)
		return
	}
	if hook != nil {
		fate := hook(&call)
		drop, delay := fate.Drop, fate.Delay
		if fate.LoseAnswer {
			klog.V(2).InfoS("Losing the answer to a scheduler call by fault injection", "type", call.Type, "framework", fwID)
			m.dispatch(fwID, &call)
			panic(http.ErrAbortHandler) // the connection breaks, no answer
		}
		if drop {
			klog.V(2).InfoS("Dropping scheduler call by fault injection", "type", call.Type, "framework", fwID)
			w.WriteHeader(http.StatusAccepted)
			return
		}
		if delay > 0 {
			// Delay processing, not the answer: the real master accepts first and acts later.
			go func() {
				select {
				case <-time.After(delay):
					m.dispatch(fwID, &call)
				case <-m.ctx.Done():
				}
			}()
			w.WriteHeader(http.StatusAccepted)
			return
		}
	}
	m.dispatch(fwID, &call)
	w.WriteHeader(http.StatusAccepted)
}

// validateCall is validation::scheduler::call::validate: principal is the
// request's authenticated principal ("" without authentication).
func validateCall(c *scheduler.Call, principal string) error {
	if c.Type == scheduler.Call_SUBSCRIBE {
		if c.Subscribe == nil {
			return errors.New("Expecting 'subscribe' to be present")
		}
		if c.Subscribe.FrameworkInfo == nil {
			return errors.New("Not initialized: subscribe.framework_info")
		}
		if c.Subscribe.FrameworkInfo.GetID().GetValue() != c.GetFrameworkID().GetValue() {
			return errors.New("'framework_id' differs from 'subscribe.framework_info.id'")
		}
		if info := c.Subscribe.FrameworkInfo; principal != "" && info.Principal != nil && principal != info.GetPrincipal() {
			return errors.New("Authenticated principal '" + principal + "' does not match principal '" + info.GetPrincipal() + "' set in `FrameworkInfo`")
		}
		return nil
	}
	if c.FrameworkID == nil {
		return errors.New("Expecting 'framework_id' to be present")
	}
	missing := func(name string) error { return errors.New("Expecting '" + name + "' to be present") }
	switch c.Type {
	case scheduler.Call_ACCEPT:
		if c.Accept == nil {
			return missing("accept")
		}
	case scheduler.Call_DECLINE:
		if c.Decline == nil {
			return missing("decline")
		}
	case scheduler.Call_ACCEPT_INVERSE_OFFERS:
		if c.AcceptInverseOffers == nil {
			return missing("accept_inverse_offers")
		}
	case scheduler.Call_DECLINE_INVERSE_OFFERS:
		if c.DeclineInverseOffers == nil {
			return missing("decline_inverse_offers")
		}
	case scheduler.Call_KILL:
		if c.Kill == nil {
			return missing("kill")
		}
	case scheduler.Call_SHUTDOWN:
		if c.Shutdown == nil {
			return missing("shutdown")
		}
	case scheduler.Call_ACKNOWLEDGE:
		if c.Acknowledge == nil {
			return missing("acknowledge")
		}
		if _, err := uuid.FromBytes(c.Acknowledge.UUID); err != nil {
			return errors.New("Not a valid UUID")
		}
	case scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS:
		if c.AcknowledgeOperationStatus == nil {
			return missing("acknowledge_operation_status")
		}
		if _, err := uuid.FromBytes(c.AcknowledgeOperationStatus.UUID); err != nil {
			return errors.New("Not a valid UUID")
		}
		if c.AcknowledgeOperationStatus.AgentID == nil {
			return missing("agent_id")
		}
	case scheduler.Call_RECONCILE:
		if c.Reconcile == nil {
			return missing("reconcile")
		}
	case scheduler.Call_RECONCILE_OPERATIONS:
		if c.ReconcileOperations == nil {
			return missing("reconcile_operations")
		}
	case scheduler.Call_MESSAGE:
		if c.Message == nil {
			return missing("message")
		}
	case scheduler.Call_REQUEST:
		if c.Request == nil {
			return missing("request")
		}
	case scheduler.Call_UPDATE_FRAMEWORK:
		if c.UpdateFramework == nil {
			return missing("update_framework")
		}
		if c.UpdateFramework.FrameworkInfo.GetID().GetValue() != c.GetFrameworkID().GetValue() {
			return errors.New("'framework_id' differs from 'update_framework.framework_info.id'")
		}
	}
	return nil
}

func (m *Master) serveSubscribe(w http.ResponseWriter, r *http.Request, call *scheduler.Call, contentType string) {
	stream := wire.NewStream(contentType, uuid.NewString())
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Mesos-Stream-Id", stream.ID)
	// Chunked streaming must not be buffered by intermediaries.
	w.Header().Set("Cache-Control", "no-cache")
	fwID, gen := m.subscribe(stream, call.Subscribe)
	if fwID != "" {
		go m.heartbeat(stream)
	}
	stream.Serve(r.Context(), w)
	if fwID != "" {
		m.disconnected(fwID, gen, stream)
	}
}

// heartbeat sends HEARTBEAT at once and then every interval, as the real
// master's heartbeater (started with no initial delay) does.
func (m *Master) heartbeat(s *wire.Stream) {
	if !s.Send(&scheduler.Event{Type: scheduler.Event_HEARTBEAT}) {
		return
	}
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-s.Done():
			return
		case <-t.C:
			if !s.Send(&scheduler.Event{Type: scheduler.Event_HEARTBEAT}) {
				return
			}
		}
	}
}

func errorEvent(msg string) *scheduler.Event {
	return &scheduler.Event{Type: scheduler.Event_ERROR, Error: &scheduler.Event_Error{Message: msg}}
}
