package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"
)

// checkpointed is what the agent writes for each executor of a checkpointing
// framework, enough for a restarted agent to find and re-adopt it.
type checkpointed struct {
	Framework   mesos.FrameworkInfo  `json:"framework_info"`
	Executor    mesos.ExecutorInfo   `json:"executor_info"`
	ContainerID string               `json:"container_id"`
	Directory   string               `json:"directory"`
	PID         int                  `json:"pid"`
	Kind        execKind             `json:"kind"`
	SentTask    bool                 `json:"sent_task"`
	Tasks       []mesos.Task         `json:"tasks"`
	TaskInfos   []mesos.TaskInfo     `json:"task_infos"`
	Updates     [][]mesos.TaskStatus `json:"updates"`
	Terminated  bool                 `json:"terminated"`
}

func (a *Agent) metaFrameworkDir(fwID string) string {
	return filepath.Join(a.cfg.WorkDir, "meta", "slaves", a.id, "frameworks", fwID)
}

func (a *Agent) metaExecutorDir(fwID, execID string) string {
	return filepath.Join(a.metaFrameworkDir(fwID), "executors", execID)
}

func (a *Agent) writeMeta(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating checkpoint dir: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing checkpoint: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("committing checkpoint: %w", err)
	}
	return nil
}

// checkpoint persists an executor's state. Executors of frameworks without
// checkpointing are recorded too, only so that a restarted agent can find and
// kill them, as the real agent destroys such orphaned containers.
func (a *Agent) checkpoint(e *executorRun) {
	if a.id == "" || (a.cfg.Hollow && a.cfg.HollowNoCheckpoint) {
		return
	}
	c := checkpointed{Framework: e.fw.info, Executor: e.info, ContainerID: e.containerID, Directory: e.dir,
		PID: e.pid, Kind: e.kind, SentTask: e.sentTask, Terminated: e.state == terminated}
	for _, t := range e.tasks {
		c.Tasks = append(c.Tasks, *t)
	}
	for _, t := range e.taskInfos {
		c.TaskInfos = append(c.TaskInfos, t)
	}
	for _, s := range a.updates {
		if s.fw == e.fw.id && s.exec == e.info.ExecutorID.Value && len(s.pending) > 0 {
			c.Updates = append(c.Updates, s.pending)
		}
	}
	b, err := json.Marshal(&c)
	if err != nil {
		klog.ErrorS(err, "Encoding executor checkpoint", "executor", e.info.ExecutorID.Value)
		return
	}
	if err := a.writeMeta(filepath.Join(a.metaExecutorDir(e.fw.id, e.info.ExecutorID.Value), "executor.json"), b); err != nil {
		klog.ErrorS(err, "Checkpointing executor", "executor", e.info.ExecutorID.Value)
	}
}

// recover re-adopts checkpointed executors. Live ones get
// ExecutorReregistrationTimeout to re-subscribe; dead ones are reported.
func (a *Agent) recover() {
	if a.id == "" {
		return
	}
	paths, _ := filepath.Glob(filepath.Join(a.cfg.WorkDir, "meta", "slaves", a.id, "frameworks", "*", "executors", "*", "executor.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			klog.ErrorS(err, "Reading executor checkpoint", "path", p)
			continue
		}
		var c checkpointed
		if err := json.Unmarshal(b, &c); err != nil {
			klog.ErrorS(err, "Decoding executor checkpoint", "path", p)
			continue
		}
		fwID := c.Framework.GetID().GetValue()
		if !c.Framework.GetCheckpoint() {
			if !c.Terminated && c.Kind != kindHollow && alive(c.PID) {
				klog.InfoS("Killing orphaned executor of a non-checkpointing framework", "framework", fwID, "executor", c.Executor.ExecutorID.Value, "pid", c.PID)
				killGroup(c.PID, 9)
			}
			if !c.Terminated && c.Kind != kindHollow {
				if err := a.containers.Destroy(c.ContainerID); err != nil {
					klog.ErrorS(err, "Destroying an orphaned container", "container", c.ContainerID)
				}
			}
			_ = os.RemoveAll(filepath.Dir(p))
			continue
		}
		fw := a.frameworks[fwID]
		if fw == nil {
			fw = &frameworkState{id: fwID, info: c.Framework, executors: map[string]*executorRun{}}
			a.frameworks[fwID] = fw
		}
		e := &executorRun{info: c.Executor, fw: fw, containerID: c.ContainerID, dir: c.Directory, pid: c.PID, kind: c.Kind,
			sentTask: c.SentTask, tasks: map[string]*mesos.Task{}, taskInfos: map[string]mesos.TaskInfo{}, killing: map[string]bool{}}
		for i := range c.Tasks {
			t := c.Tasks[i]
			e.tasks[t.TaskID.Value] = &t
		}
		for _, t := range c.TaskInfos {
			e.taskInfos[t.TaskID.Value] = t
		}
		fw.executors[e.info.ExecutorID.Value] = e
		for _, pending := range c.Updates {
			if len(pending) == 0 {
				continue
			}
			key := fwID + "/" + pending[0].TaskID.Value
			a.updates[key] = &updateStream{fw: fwID, exec: e.info.ExecutorID.Value, pending: pending, backoff: a.cfg.StatusUpdateRetryInterval}
		}
		switch {
		case c.Terminated:
			e.state = terminated
		case e.kind == kindHollow:
			e.state = running
		case e.pid == 0 || !alive(e.pid):
			// pid 0: the agent stopped while fetching; the real agent
			// destroys a container it was launching, and one whose
			// executor died meanwhile, with whatever it left running.
			e.state = running
			if err := a.containers.Destroy(e.containerID); err != nil {
				klog.ErrorS(err, "Destroying the container of an executor that did not survive", "container", e.containerID)
			}
			a.executorTerminatedLocked(e, -1, mesos.REASON_EXECUTOR_TERMINATED, "Executor did not survive the agent restart")
		default:
			e.state = registering
			e.recovered = true
			done, status := watchPid(e.pid, nil)
			a.watchExecutorLocked(e, done, status)
			if e.kind == kindCommand {
				e.state = running
				continue
			}
			timeout := a.cfg.ExecutorReregistrationTimeout
			e.timer = time.AfterFunc(timeout, func() {
				a.mu.Lock()
				defer a.mu.Unlock()
				if e.state == registering {
					klog.InfoS("Recovered executor did not re-subscribe, killing it", "executor", e.info.ExecutorID.Value)
					killGroup(e.pid, 9)
					a.executorTerminatedLocked(e, -1, mesos.REASON_EXECUTOR_REREGISTRATION_TIMEOUT, "Executor did not reregister within "+timeout.String())
				}
			})
		}
		klog.InfoS("Recovered executor", "framework", fwID, "executor", e.info.ExecutorID.Value, "pid", e.pid, "state", e.state)
	}
}
