package master

import (
	"net/http"
	"sort"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/k8sm/k8sm/hack/mesos-sim/state"
)

// State returns the master's state in the shape of GET /master/state.
func (m *Master) State() state.Object {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := VersionInfo()
	out := state.Object{
		"git_sha":    v.GetGitSHA(),
		"git_tag":    v.GetGitTag(),
		"build_date": v.GetBuildDate(),
		"build_time": v.GetBuildTime(),
		"build_user": v.GetBuildUser(),
		"version":    m.info.GetVersion(),
		"id":         m.cfg.ID,
		"pid":        m.info.GetPID(),
		"hostname":   m.cfg.Hostname,
		"start_time": float64(m.start.UnixNano()) / 1e9,
		"flags": state.Object{
			"allocation_interval": FormatDuration(m.cfg.AllocationInterval),
			"offer_timeout":       FormatDuration(m.cfg.OfferTimeout),
			"agent_ping_timeout":  FormatDuration(m.cfg.AgentPingTimeout),
		},
	}
	if m.elected {
		out["elected_time"] = float64(m.start.UnixNano()) / 1e9
	}
	if m.leader != nil {
		out["leader"] = m.leader.GetPID()
		out["leader_info"] = m.leader
	}
	var agents []state.Object
	active, unreachable := 0, 0
	for _, ag := range m.agents {
		used := mesos.Resources{}
		offered := mesos.Resources{}
		for _, fw := range m.frameworks {
			for _, t := range fw.tasks {
				if t.AgentID.Value == ag.info.ID.Value && !isTerminal(t.GetState()) {
					used = used.Plus(internalFormat(t.Resources)...)
				}
			}
		}
		// As the real master's Slave::usedResources: executors hold their
		// resources as long as they run, whether or not they have tasks. The
		// master forgets those of an unreachable agent (and their tasks),
		// until the agent re-registers with what still runs.
		for _, es := range ag.executors {
			for _, e := range es {
				if !ag.unreachable {
					used = used.Plus(internalFormat(e.Resources)...)
				}
			}
		}
		for _, o := range m.offers {
			if o.agent == ag.info.ID.Value {
				offered = offered.Plus(o.resources...)
			}
		}
		if ag.unreachable {
			// The real master moves an unreachable agent out of its
			// registered agents (Master::markUnreachable): it is counted,
			// not listed.
			unreachable++
			continue
		}
		active++
		reserved := state.Object{}
		for role, rs := range reservations(ag.info.Resources) {
			reserved[role] = state.Resources(rs)
		}
		agents = append(agents, state.Object{
			"id":                   ag.info.ID.Value,
			"pid":                  ag.pid,
			"hostname":             ag.info.Hostname,
			"port":                 ag.port,
			"attributes":           state.Attributes(ag.info.Attributes),
			"resources":            state.Resources(ag.info.Resources),
			"used_resources":       state.Resources(used),
			"offered_resources":    state.Resources(offered),
			"active":               true,
			"registered_time":      float64(ag.registered.UnixNano()) / 1e9,
			"version":              Version,
			"reserved_resources":   reserved,
			"unreserved_resources": state.Resources(unreserved(ag.info.Resources)),
			"capabilities":         agentCapabilities(),
			"deactivated":          false,
		})
	}
	sort.Slice(agents, func(i, j int) bool { return agents[i]["id"].(string) < agents[j]["id"].(string) })
	out["slaves"] = nonNil(agents)
	out["activated_slaves"] = active
	out["deactivated_slaves"] = 0
	out["unreachable_slaves"] = unreachable
	var fws, done []state.Object
	for _, fw := range m.frameworks {
		fws = append(fws, m.frameworkState(fw, true))
	}
	for _, fw := range m.completedFrameworks {
		done = append(done, m.frameworkState(fw, false))
	}
	sort.Slice(fws, func(i, j int) bool { return fws[i]["id"].(string) < fws[j]["id"].(string) })
	out["frameworks"] = nonNil(fws)
	out["completed_frameworks"] = nonNil(done)
	var orphans []state.Object
	for _, ts := range m.orphanTasks {
		for _, t := range ts {
			orphans = append(orphans, state.Task(*t))
		}
	}
	out["orphan_tasks"] = nonNil(orphans)
	out["unregistered_frameworks"] = []string{}
	return out
}

func nonNil(s []state.Object) []state.Object {
	if s == nil {
		return []state.Object{}
	}
	return s
}

func (m *Master) frameworkState(fw *framework, registered bool) state.Object {
	var tasks, completed, offers []state.Object
	used := mesos.Resources{}
	for _, t := range fw.tasks {
		tasks = append(tasks, taskObject(fw, *t))
		if !isTerminal(t.GetState()) {
			used = used.Plus(internalFormat(t.Resources)...)
		}
	}
	for _, t := range fw.completedTasks {
		completed = append(completed, taskObject(fw, t))
	}
	offered := mesos.Resources{}
	for _, o := range fw.offers {
		offered = offered.Plus(o.resources...)
		offers = append(offers, state.Object{
			"id": o.offer.ID.Value, "framework_id": fw.id, "slave_id": o.agent,
			"resources": state.Resources(o.resources), "allocation_info": state.Object{"role": o.role},
		})
	}
	var execs []state.Object
	for aid, es := range fw.executors {
		for _, e := range es {
			used = used.Plus(internalFormat(e.Resources)...)
			execs = append(execs, state.Object{"executor_id": e.ExecutorID.Value, "slave_id": aid, "name": e.GetName(),
				"framework_id": fw.id, "resources": state.Resources(e.Resources)})
		}
	}
	caps := fw.info.Capabilities
	if caps == nil {
		caps = []mesos.FrameworkInfo_Capability{}
	}
	o := state.Object{
		"id":                fw.id,
		"name":              fw.info.Name,
		"user":              fw.info.User,
		"hostname":          fw.info.GetHostname(),
		"principal":         fw.info.GetPrincipal(),
		"webui_url":         fw.info.GetWebUiURL(),
		"failover_timeout":  fw.info.GetFailoverTimeout(),
		"checkpoint":        fw.info.GetCheckpoint(),
		"roles":             fw.roles,
		"capabilities":      caps,
		"active":            registered && fw.conn != nil,
		"connected":         registered && fw.conn != nil,
		"recovered":         false,
		"registered_time":   float64(fw.registered.UnixNano()) / 1e9,
		"used_resources":    state.Resources(used),
		"offered_resources": state.Resources(offered),
		"resources":         state.Resources(used.Plus(offered...)),
		"tasks":             nonNil(tasks),
		"completed_tasks":   nonNil(completed),
		"offers":            nonNil(offers),
		"executors":         nonNil(execs),
		"suppressed_roles":  m.alloc.Suppressed(fw.id),
	}
	if !fw.multiRole {
		o["role"] = fw.info.GetRole()
	}
	return o
}

func (m *Master) serveState(w http.ResponseWriter, r *http.Request) {
	state.Serve(w, r, m.State())
}

// serveStateKeys serves a subset of the state, like /master/slaves and /master/frameworks.
func (m *Master) serveStateKeys(keys ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		full := m.State()
		out := state.Object{}
		for _, k := range keys {
			out[k] = full[k]
		}
		state.Serve(w, r, out)
	}
}

// reservations groups resources reserved to a role by that role (the last
// reservation of a refined stack, or the pre-refinement role).
func reservations(rs []mesos.Resource) map[string][]mesos.Resource {
	out := map[string][]mesos.Resource{}
	for _, r := range rs {
		role := ""
		if n := len(r.Reservations); n > 0 {
			role = r.Reservations[n-1].GetRole()
		} else if r.GetRole() != "" && r.GetRole() != "*" {
			role = r.GetRole()
		}
		if role != "" {
			out[role] = append(out[role], r)
		}
	}
	return out
}

func unreserved(rs []mesos.Resource) []mesos.Resource {
	var out []mesos.Resource
	for _, r := range rs {
		if len(r.Reservations) == 0 && (r.GetRole() == "" || r.GetRole() == "*") {
			out = append(out, r)
		}
	}
	return out
}

// taskObject renders a task of fw with its role: the master allocates every
// task's resources to a role (a framework without MULTI_ROLE has one).
func taskObject(fw *framework, t mesos.Task) state.Object {
	o := state.Task(t)
	if _, ok := o["role"]; !ok {
		role := fw.info.GetRole()
		if role == "" {
			role = "*"
		}
		o["role"] = role
	}
	return o
}
