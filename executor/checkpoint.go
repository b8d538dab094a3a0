package executor

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// loadCheckpoint reads the state an earlier process of this executor left
// (nil when there is none).
func loadCheckpoint(path string) (*executorState, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the executor checkpoint: %w", err)
	}
	var st executorState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("reading the executor checkpoint %s: %w", path, err)
	}
	if st.Tasks == nil {
		st.Tasks = map[string]*task{}
	}
	return &st, nil
}

// save checkpoints the registry and the connection's unacknowledged state,
// atomically, when something changed.
func (l *loop) save() error {
	if l.o.CheckpointFile == "" {
		return nil
	}
	st := executorState{Node: l.node, Tasks: l.tasks, Conn: l.conn.State()}
	b, err := json.Marshal(redactState(st))
	if err != nil {
		return fmt.Errorf("encoding the executor checkpoint: %w", err)
	}
	if string(b) == string(l.savedBytes) {
		return nil
	}
	tmp := l.o.CheckpointFile + ".tmp"
	if err := os.MkdirAll(filepath.Dir(tmp), 0o755); err != nil {
		return fmt.Errorf("writing the executor checkpoint: %w", err)
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing the executor checkpoint: %w", err)
	}
	if err := os.Rename(tmp, l.o.CheckpointFile); err != nil {
		return fmt.Errorf("writing the executor checkpoint: %w", err)
	}
	l.savedBytes = b
	return nil
}

// The checkpoint lives in the Mesos sandbox, which the agent's /files
// endpoint serves to whoever may browse it, so it holds no secret: only what
// a restarted executor needs. The pods it keeps are the identity, node and
// stop-time fields (grace periods, deletion, preStop hooks, k8sm's host
// ports), without env values, annotations or managed fields: literal env
// values are where pods often carry credentials, and the last-applied
// annotation repeats them. Secrets' values never appear in a pod, only
// references to them. A restarted executor reads each pod from the API server
// before the kubelet runs it, so the redacted copy is never run.

// redactedEnv replaces a literal env value in the checkpoint.
const redactedEnv = "(redacted by k8sm-executor)"

func redactState(st executorState) executorState {
	tasks := make(map[string]*task, len(st.Tasks))
	for id, t := range st.Tasks {
		c := *t
		c.Info = redactTaskInfo(t.Info)
		c.LastPod = redactPod(t.LastPod)
		tasks[id] = &c
	}
	st.Tasks = tasks
	conn := st.Conn
	conn.Tasks = make([]mesos.TaskInfo, len(st.Conn.Tasks))
	for i := range st.Conn.Tasks {
		conn.Tasks[i] = redactTaskInfo(st.Conn.Tasks[i])
	}
	st.Conn = conn
	return st
}

// redactTaskInfo keeps the task's pod (its data) only as redactPod leaves
// it; data that is not a pod is dropped (the task failed on it already).
func redactTaskInfo(info mesos.TaskInfo) mesos.TaskInfo {
	if len(info.Data) == 0 {
		return info
	}
	var pod v1.Pod
	if err := json.Unmarshal(info.Data, &pod); err != nil {
		info.Data = nil
		return info
	}
	b, err := json.Marshal(redactPod(&pod))
	if err != nil {
		info.Data = nil
		return info
	}
	info.Data = b
	return info
}

func redactPod(in *v1.Pod) *v1.Pod {
	if in == nil {
		return nil
	}
	p := in.DeepCopy()
	p.ManagedFields = nil
	p.Annotations = maps.Clone(p.Annotations)
	maps.DeleteFunc(p.Annotations, func(k, _ string) bool {
		prefix, _, _ := strings.Cut(k, "/")
		return prefix != taskinfo.AnnotationPrefix
	})
	redactEnv := func(env []v1.EnvVar) {
		for i := range env {
			if env[i].Value != "" {
				env[i].Value = redactedEnv
			}
		}
	}
	for i := range p.Spec.InitContainers {
		redactEnv(p.Spec.InitContainers[i].Env)
	}
	for i := range p.Spec.Containers {
		redactEnv(p.Spec.Containers[i].Env)
	}
	for i := range p.Spec.EphemeralContainers {
		redactEnv(p.Spec.EphemeralContainers[i].Env)
	}
	return p
}
