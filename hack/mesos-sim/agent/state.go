package agent

import (
	"net/http"

	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/state"
)

// State returns the agent's state in the shape of GET /state.
func (a *Agent) State() state.Object {
	a.mu.Lock()
	defer a.mu.Unlock()
	var fws []state.Object
	for _, fw := range a.frameworks {
		var execs, done []state.Object
		for _, e := range fw.executors {
			var tasks, queued []state.Object
			for _, t := range e.tasks {
				tasks = append(tasks, state.Task(*t))
			}
			for _, l := range e.queued {
				if l.task != nil {
					queued = append(queued, state.Object{"id": l.task.TaskID.Value, "name": l.task.Name})
				}
			}
			o := state.Object{
				"id": e.info.ExecutorID.Value, "name": e.info.GetName(), "source": e.info.GetSource(),
				"container": e.containerID, "directory": e.dir, "sandbox": e.dir, "pid": e.pid,
				"state": e.state.String(), "resources": state.Resources(e.info.Resources),
				"tasks": nonNil(tasks), "queued_tasks": nonNil(queued), "completed_tasks": []state.Object{},
			}
			if e.state == terminated {
				done = append(done, o)
			} else {
				execs = append(execs, o)
			}
		}
		fws = append(fws, state.Object{
			"id": fw.id, "name": fw.info.Name, "user": fw.info.User, "checkpoint": fw.info.GetCheckpoint(),
			"executors": nonNil(execs), "completed_executors": nonNil(done),
		})
	}
	return state.Object{
		"version":    "1.11.0",
		"id":         a.id,
		"pid":        a.PID(),
		"hostname":   a.cfg.Hostname,
		"resources":  state.Resources(a.cfg.Resources),
		"attributes": state.Attributes(a.cfg.Attributes),
		"frameworks": nonNil(fws),
		"flags": state.Object{
			"work_dir":                        a.cfg.WorkDir,
			"hollow":                          a.cfg.Hollow,
			"executor_shutdown_grace_period":  master.FormatDuration(a.cfg.ExecutorShutdownGracePeriod),
			"recovery_timeout":                master.FormatDuration(a.cfg.RecoveryTimeout),
			"executor_reregistration_timeout": master.FormatDuration(a.cfg.ExecutorReregistrationTimeout),
		},
		"master_hostname": "",
		"partitioned":     a.partitioned.Load(),
	}
}

func nonNil(s []state.Object) []state.Object {
	if s == nil {
		return []state.Object{}
	}
	return s
}

func (a *Agent) serveState(w http.ResponseWriter, r *http.Request) { state.Serve(w, r, a.State()) }
