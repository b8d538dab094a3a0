package agent

import (
	"net/http"
	"sort"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	agentapi "github.com/mesos/mesos-go/api/v1/lib/agent"

	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// serveOperator is the agent's v1 operator API, POST /api/v1
// (Slave::Http::api): the read calls tools use; the rest answer 501.
func (a *Agent) serveOperator(w http.ResponseWriter, r *http.Request) {
	var call agentapi.Call
	if wire.ReadCall(w, r, MaxRequestSize, &call) == "" {
		return
	}
	accept, ok := wire.NegotiateStream(r.Header.Values("Accept"))
	if !ok {
		httpError(w, http.StatusNotAcceptable, wire.NotAcceptableMessage)
		return
	}
	var resp *agentapi.Response
	switch call.Type {
	case agentapi.Call_GET_HEALTH:
		resp = &agentapi.Response{Type: agentapi.Response_GET_HEALTH, GetHealth: &agentapi.Response_GetHealth{Healthy: true}}
	case agentapi.Call_GET_VERSION:
		resp = &agentapi.Response{Type: agentapi.Response_GET_VERSION, GetVersion: &agentapi.Response_GetVersion{VersionInfo: master.VersionInfo()}}
	case agentapi.Call_GET_FLAGS:
		var flags []mesos.Flag
		for name, v := range map[string]string{
			"work_dir": a.cfg.WorkDir, "hostname": a.cfg.Hostname, "ip": a.cfg.IP,
			"executor_shutdown_grace_period": master.FormatDuration(a.cfg.ExecutorShutdownGracePeriod),
			"recovery_timeout":               master.FormatDuration(a.cfg.RecoveryTimeout),
		} {
			v := v
			flags = append(flags, mesos.Flag{Name: name, Value: &v})
		}
		sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
		resp = &agentapi.Response{Type: agentapi.Response_GET_FLAGS, GetFlags: &agentapi.Response_GetFlags{Flags: flags}}
	case agentapi.Call_GET_AGENT:
		a.mu.Lock()
		info := a.info
		a.mu.Unlock()
		resp = &agentapi.Response{Type: agentapi.Response_GET_AGENT, GetAgent: &agentapi.Response_GetAgent{AgentInfo: &info}}
	case agentapi.Call_GET_STATE:
		resp = &agentapi.Response{Type: agentapi.Response_GET_STATE, GetState: a.getState()}
	case agentapi.Call_GET_FRAMEWORKS:
		resp = &agentapi.Response{Type: agentapi.Response_GET_FRAMEWORKS, GetFrameworks: a.getState().GetFrameworks}
	case agentapi.Call_GET_EXECUTORS:
		resp = &agentapi.Response{Type: agentapi.Response_GET_EXECUTORS, GetExecutors: a.getState().GetExecutors}
	case agentapi.Call_GET_TASKS:
		resp = &agentapi.Response{Type: agentapi.Response_GET_TASKS, GetTasks: a.getState().GetTasks}
	case agentapi.Call_GET_CONTAINERS:
		resp = &agentapi.Response{Type: agentapi.Response_GET_CONTAINERS, GetContainers: a.getContainers()}
	default:
		httpError(w, http.StatusNotImplemented, "mesos-sim does not implement "+call.Type.String())
		return
	}
	wire.WriteMessage(w, accept, resp)
}

// getState is GET_STATE: what runs here, by framework and executor.
func (a *Agent) getState() *agentapi.Response_GetState {
	a.mu.Lock()
	defer a.mu.Unlock()
	tasks := &agentapi.Response_GetTasks{}
	execs := &agentapi.Response_GetExecutors{}
	fws := &agentapi.Response_GetFrameworks{}
	for _, fid := range sortedKeys(a.frameworks) {
		fw := a.frameworks[fid]
		info := fw.info
		fws.Frameworks = append(fws.Frameworks, agentapi.Response_GetFrameworks_Framework{FrameworkInfo: info})
		for _, eid := range sortedKeys(fw.executors) {
			e := fw.executors[eid]
			ex := agentapi.Response_GetExecutors_Executor{ExecutorInfo: e.info}
			if e.state == terminated {
				execs.CompletedExecutors = append(execs.CompletedExecutors, ex)
			} else {
				execs.Executors = append(execs.Executors, ex)
			}
			queued := map[string]bool{}
			for _, l := range e.queued {
				if l.task != nil {
					queued[l.task.TaskID.Value] = true
				}
				if l.group != nil {
					for _, t := range l.group.Tasks {
						queued[t.TaskID.Value] = true
					}
				}
			}
			for _, tid := range sortedKeys(e.tasks) {
				t := *e.tasks[tid]
				switch {
				case isTerminal(t.GetState()):
					tasks.TerminatedTasks = append(tasks.TerminatedTasks, t)
				case queued[tid]:
					tasks.QueuedTasks = append(tasks.QueuedTasks, t)
				default:
					tasks.LaunchedTasks = append(tasks.LaunchedTasks, t)
				}
			}
		}
	}
	return &agentapi.Response_GetState{GetTasks: tasks, GetExecutors: execs, GetFrameworks: fws}
}

// getContainers is GET_CONTAINERS: one container per running executor.
func (a *Agent) getContainers() *agentapi.Response_GetContainers {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := &agentapi.Response_GetContainers{}
	for _, fid := range sortedKeys(a.frameworks) {
		fw := a.frameworks[fid]
		for _, eid := range sortedKeys(fw.executors) {
			e := fw.executors[eid]
			if e.state == terminated || e.kind == kindHollow {
				continue
			}
			fwID, execID, name := mesos.FrameworkID{Value: fid}, mesos.ExecutorID{Value: eid}, e.info.GetName()
			st := &mesos.TaskStatus{}
			a.addContainerStatus(e, st)
			out.Containers = append(out.Containers, agentapi.Response_GetContainers_Container{
				FrameworkID: &fwID, ExecutorID: &execID, ExecutorName: &name,
				ContainerID: mesos.ContainerID{Value: e.containerID}, ContainerStatus: st.ContainerStatus,
			})
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
