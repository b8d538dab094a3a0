package master

import (
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/k8sm/k8sm/hack/mesos-sim/state"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// taskLimit is /master/tasks' default limit (TASK_LIMIT in constants.hpp).
const taskLimit = 100

type flag struct{ name, value string }

// flags are the master's flags as /flags and GET_FLAGS show them.
func (m *Master) flags() []flag {
	return []flag{
		{"allocation_interval", FormatDuration(m.cfg.AllocationInterval)},
		{"offer_timeout", FormatDuration(m.cfg.OfferTimeout)},
		{"agent_ping_timeout", FormatDuration(m.cfg.AgentPingTimeout)},
		{"max_agent_ping_timeouts", strconv.Itoa(m.cfg.MaxAgentPingTimeouts)},
		{"hostname", m.cfg.Hostname},
		{"ip", m.cfg.IP},
		{"port", strconv.Itoa(m.cfg.Port)},
		{"authenticate_frameworks", "false"},
		{"authenticate_http_frameworks", "false"},
		{"version", "false"},
	}
}

func serveVersion(w http.ResponseWriter, r *http.Request) {
	v := VersionInfo()
	state.Serve(w, r, state.Object{
		"version": v.Version, "build_date": v.GetBuildDate(), "build_time": v.GetBuildTime(),
		"build_user": v.GetBuildUser(), "git_sha": v.GetGitSHA(), "git_tag": v.GetGitTag(),
	})
}

func (m *Master) serveFlags(w http.ResponseWriter, r *http.Request) {
	out := state.Object{}
	for _, f := range m.flags() {
		out[f.name] = f.value
	}
	state.Serve(w, r, state.Object{"flags": out})
}

// serveMetrics is /metrics/snapshot with the master's gauges and counters
// that describe what the double models.
func (m *Master) serveMetrics(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	out := state.Object{"master/uptime_secs": time.Since(m.start).Seconds(), "master/elected": b2f(m.elected)}
	var active, unreachable, fwConn, fwDisc float64
	for _, ag := range m.agents {
		if ag.unreachable {
			unreachable++
		} else {
			active++
		}
	}
	for _, fw := range m.frameworks {
		if fw.conn != nil {
			fwConn++
		} else {
			fwDisc++
		}
	}
	states := map[string]float64{}
	for _, s := range []mesos.TaskState{mesos.TASK_STAGING, mesos.TASK_STARTING, mesos.TASK_RUNNING, mesos.TASK_UNREACHABLE, mesos.TASK_KILLING,
		mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_LOST, mesos.TASK_ERROR, mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR} {
		states[stateMetric(s)] = 0
	}
	for _, fw := range m.frameworks {
		for _, t := range fw.tasks {
			states[stateMetric(t.GetState())]++
		}
		for _, t := range fw.completedTasks {
			states[stateMetric(t.GetState())]++
		}
	}
	for k, v := range states {
		out[k] = v
	}
	out["master/slaves_active"], out["master/slaves_connected"] = active, active
	out["master/slaves_inactive"], out["master/slaves_disconnected"] = 0.0, 0.0
	out["master/slaves_unreachable"] = unreachable
	out["master/frameworks_connected"], out["master/frameworks_active"] = fwConn, fwConn
	out["master/frameworks_disconnected"], out["master/frameworks_inactive"] = fwDisc, fwDisc
	out["master/outstanding_offers"] = float64(len(m.offers))
	out["master/operator_event_stream_subscribers"] = float64(len(m.subscribers))
	m.mu.Unlock()
	state.Serve(w, r, out)
}

func stateMetric(s mesos.TaskState) string {
	return "master/tasks_" + lower(s.String()[len("TASK_"):])
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// serveStateSummary is /master/state-summary: agents and frameworks with
// their task counts by state, as the web UI reads them.
func (m *Master) serveStateSummary(w http.ResponseWriter, r *http.Request) {
	full := m.State()
	m.mu.Lock()
	counts := func(match func(*mesos.Task) bool) state.Object {
		c := state.Object{}
		for _, s := range []string{"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_FINISHED", "TASK_KILLED",
			"TASK_FAILED", "TASK_LOST", "TASK_ERROR", "TASK_UNREACHABLE"} {
			c[s] = 0
		}
		for _, fw := range m.frameworks {
			for _, t := range fw.tasks {
				if match(t) {
					c[t.GetState().String()] = c[t.GetState().String()].(int) + 1
				}
			}
		}
		return c
	}
	var agents, fws []state.Object
	for _, id := range sortedKeys(m.agents) {
		ag := m.agents[id]
		if ag.unreachable {
			continue // counted in /master/state, listed nowhere
		}
		o := state.Object{
			"id": id, "pid": ag.pid, "hostname": ag.info.Hostname, "registered_time": float64(ag.registered.UnixNano()) / 1e9,
			"resources": state.Resources(ag.info.Resources), "attributes": state.Attributes(ag.info.Attributes),
			"active": true, "version": Version,
		}
		for k, v := range counts(func(t *mesos.Task) bool { return t.AgentID.Value == id }) {
			o[k] = v
		}
		var fids []string
		for fid := range ag.executors {
			fids = append(fids, fid)
		}
		sort.Strings(fids)
		o["framework_ids"] = nonNilStrings(fids)
		agents = append(agents, o)
	}
	for _, id := range sortedKeys(m.frameworks) {
		fw := m.frameworks[id]
		o := state.Object{"id": id, "name": fw.info.Name, "hostname": fw.info.GetHostname(), "webui_url": fw.info.GetWebUiURL(),
			"active": fw.conn != nil}
		for k, v := range counts(func(t *mesos.Task) bool { return t.FrameworkID.Value == id }) {
			o[k] = v
		}
		var aids []string
		for aid := range fw.executors {
			aids = append(aids, aid)
		}
		sort.Strings(aids)
		o["slave_ids"] = nonNilStrings(aids)
		fws = append(fws, o)
	}
	m.mu.Unlock()
	// used and offered resources as /master/state computes them
	for _, a := range agents {
		for _, s := range full["slaves"].([]state.Object) {
			if s["id"] == a["id"] {
				a["used_resources"] = s["used_resources"]
			}
		}
	}
	for _, f := range fws {
		for _, s := range full["frameworks"].([]state.Object) {
			if s["id"] == f["id"] {
				f["used_resources"], f["offered_resources"], f["capabilities"] = s["used_resources"], s["offered_resources"], s["capabilities"]
			}
		}
	}
	state.Serve(w, r, state.Object{"hostname": m.cfg.Hostname, "slaves": nonNil(agents), "frameworks": nonNil(fws)})
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// serveRoles is /master/roles.
func (m *Master) serveRoles(w http.ResponseWriter, r *http.Request) {
	var out []state.Object
	for _, role := range m.roles() {
		var ids []string
		for _, f := range role.Frameworks {
			ids = append(ids, f.Value)
		}
		out = append(out, state.Object{"name": role.Name, "weight": role.Weight, "frameworks": nonNilStrings(ids)})
	}
	state.Serve(w, r, state.Object{"roles": nonNil(out)})
}

// serveTeardown is POST /master/teardown with frameworkId=<id> in the body.
func (m *Master) serveTeardown(w http.ResponseWriter, r *http.Request) {
	if !m.Elected() {
		m.redirect(w, r)
		return
	}
	if r.Method != http.MethodPost {
		wire.MethodNotAllowed(w, r)
		return
	}
	body := make([]byte, 4096)
	n, _ := r.Body.Read(body)
	values, err := url.ParseQuery(string(body[:n]))
	if err != nil {
		httpError(w, http.StatusBadRequest, "Unable to decode query string: "+err.Error())
		return
	}
	id := values.Get("frameworkId")
	if id == "" {
		httpError(w, http.StatusBadRequest, "Missing 'frameworkId' query parameter in the request body")
		return
	}
	if !m.teardown(id) {
		httpError(w, http.StatusBadRequest, "No framework found with specified ID")
		return
	}
	w.WriteHeader(http.StatusOK)
}

// teardown removes a framework as an operator asks; false if unknown.
func (m *Master) teardown(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	fw := m.frameworks[id]
	if fw == nil {
		return false
	}
	m.removeFramework(fw)
	return true
}

// serveTasks is /master/tasks: the tasks of registered and completed
// frameworks, filtered by framework_id and task_id, ordered by their first
// status's timestamp (order=asc|des, default des), limit (default 100) from
// offset (ReadOnlyHandler::tasks).
func (m *Master) serveTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil {
		limit = taskLimit
	}
	offset, err := strconv.Atoi(q.Get("offset"))
	if err != nil {
		offset = 0
	}
	asc := q.Get("order") == "asc"
	fwID, taskID := q.Get("framework_id"), q.Get("task_id")
	state.Serve(w, r, state.Object{"tasks": m.tasksPage(fwID, taskID, asc, offset, limit)})
}

func (m *Master) tasksPage(fwID, taskID string, asc bool, offset, limit int) []state.Object {
	m.mu.Lock()
	defer m.mu.Unlock()
	var tasks []mesos.Task
	fwOf := map[string]*framework{}
	collect := func(fw *framework) {
		fwOf[fw.id] = fw
		if fwID != "" && fw.id != fwID {
			return
		}
		for _, t := range fw.tasks {
			if taskID == "" || t.TaskID.Value == taskID {
				tasks = append(tasks, *t)
			}
		}
		for _, t := range fw.completedTasks {
			if taskID == "" || t.TaskID.Value == taskID {
				tasks = append(tasks, t)
			}
		}
	}
	for _, fw := range m.frameworks {
		collect(fw)
	}
	for _, fw := range m.completedFrameworks {
		collect(fw)
	}
	first := func(t mesos.Task) float64 {
		if len(t.Statuses) == 0 {
			return 0
		}
		return t.Statuses[0].GetTimestamp()
	}
	sort.SliceStable(tasks, func(i, j int) bool {
		a, b := first(tasks[i]), first(tasks[j])
		if a == b {
			return tasks[i].TaskID.Value < tasks[j].TaskID.Value
		}
		if asc {
			return a < b
		}
		return a > b
	})
	out := []state.Object{}
	if offset < 0 {
		offset = 0
	}
	for i := offset; i < len(tasks) && i < offset+limit; i++ {
		out = append(out, taskObject(fwOf[tasks[i].FrameworkID.Value], tasks[i]))
	}
	return out
}
