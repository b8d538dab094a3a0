package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"
)

// What a real agent checkpoints for a framework with checkpoint set
// (slave.cpp's Executor::checkpointTask, the status update manager), and
// how: each task once, when it is launched, as a Task protobuf (the task
// as launched: no TaskInfo, so no data), then each of its status updates
// and acknowledgements as a StatusUpdateRecord; every record prefixed by
// its length as a 4-byte little-endian integer (stout's protobuf::write),
// and nothing fsynced (state::checkpoint's sync defaults to false). The
// sim writes those same records, but appended to one file per executor
// run (runs/<container>/tasks.log, each record in an envelope naming its
// task) instead of task.info and task.updates in a directory per task:
// on these hosts creating a file or a directory costs 100–200 µs of CPU
// against 2 µs for an append to an open file, and hollow agents share the
// cores with what a benchmark measures. A real agent's checkpoint costs
// its own machine.
//
// The executor itself is described by a record of the sim's own
// (executor.json: what its containerizer and launcher would keep, the
// pid, the container, the kind), rewritten only when it changes. It is
// kept for executors of non-checkpointing frameworks too, only so that a
// restarted agent can find and kill them, as the real agent destroys such
// orphaned containers.

// checkpointed is the executor record.
type checkpointed struct {
	Framework   mesos.FrameworkInfo `json:"framework_info"`
	Executor    mesos.ExecutorInfo  `json:"executor_info"`
	ContainerID string              `json:"container_id"`
	Directory   string              `json:"directory"`
	PID         int                 `json:"pid"`
	Kind        execKind            `json:"kind"`
	SentTask    bool                `json:"sent_task"`
	Terminated  bool                `json:"terminated"`
}

func (c *checkpointed) same(o *checkpointed) bool {
	return c.ContainerID == o.ContainerID && c.Directory == o.Directory && c.PID == o.PID && c.Kind == o.Kind &&
		c.SentTask == o.SentTask && c.Terminated == o.Terminated && c.Framework.Equal(&o.Framework) && c.Executor.Equal(&o.Executor)
}

func (a *Agent) metaFrameworkDir(fwID string) string {
	return filepath.Join(a.cfg.WorkDir, "meta", "slaves", a.id, "frameworks", fwID)
}

func (a *Agent) metaExecutorDir(fwID, execID string) string {
	return filepath.Join(a.metaFrameworkDir(fwID), "executors", execID)
}

func (a *Agent) taskLogPath(e *executorRun) string {
	return filepath.Join(a.metaExecutorDir(e.fw.id, e.info.ExecutorID.Value), "runs", e.containerID, "tasks.log")
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

// checkpointing reports whether the agent writes e's state at all.
func (a *Agent) checkpointing(e *executorRun) bool {
	return a.id != "" && !(a.cfg.Hollow && a.cfg.HollowNoCheckpoint)
}

// checkpoint persists what changed of an executor: its record, and each
// task not yet written.
func (a *Agent) checkpoint(e *executorRun) {
	if !a.checkpointing(e) {
		return
	}
	c := &checkpointed{Framework: e.fw.info, Executor: e.info, ContainerID: e.containerID, Directory: e.dir,
		PID: e.pid, Kind: e.kind, SentTask: e.sentTask, Terminated: e.state == terminated}
	if e.written == nil || !e.written.same(c) {
		b, err := json.Marshal(c)
		if err != nil {
			klog.ErrorS(err, "Encoding executor checkpoint", "executor", e.info.ExecutorID.Value)
			return
		}
		if err := a.writeMeta(filepath.Join(a.metaExecutorDir(e.fw.id, e.info.ExecutorID.Value), "executor.json"), b); err != nil {
			klog.ErrorS(err, "Checkpointing executor", "executor", e.info.ExecutorID.Value)
			return
		}
		e.written = c
	}
	if !e.fw.info.GetCheckpoint() {
		return
	}
	for id, t := range e.tasks {
		if e.writtenTasks[id] {
			continue
		}
		// protobuf::createTask: the task as launched, its states to come in its updates.
		task := *t
		staging := mesos.TASK_STAGING
		task.State, task.Statuses, task.StatusUpdateState, task.StatusUpdateUUID = &staging, nil, nil, nil
		b, err := task.Marshal()
		if err != nil {
			klog.ErrorS(err, "Encoding task checkpoint", "task", id)
			continue
		}
		if !a.appendTaskLog(e, id, logTask, b) {
			continue
		}
		if e.writtenTasks == nil {
			e.writtenTasks = map[string]bool{}
		}
		e.writtenTasks[id] = true
	}
}

// checkpointUpdate records a status update the agent is about to forward
// (before it is sent: a crash then must not lose it).
func (a *Agent) checkpointUpdate(e *executorRun, st mesos.TaskStatus) {
	if !a.checkpointing(e) || !e.fw.info.GetCheckpoint() {
		return
	}
	id := st.TaskID.Value
	if !e.writtenTasks[id] {
		a.checkpoint(e)
	}
	if rec := updateRecord(e.fw.id, e.info.ExecutorID.Value, a.id, st); rec != nil {
		a.appendTaskLog(e, id, logUpdateRecord, rec)
	}
}

// checkpointAck records the acknowledgement of a task's oldest pending
// update. When the executor is left with no task and no update to
// deliver, nothing in its log is needed any more: it is emptied, so that
// the log of a long-lived executor does not grow without end.
func (a *Agent) checkpointAck(e *executorRun, taskID string, uuid []byte) {
	if !a.checkpointing(e) || !e.fw.info.GetCheckpoint() {
		return
	}
	a.appendTaskLog(e, taskID, logUpdateRecord, ackRecord(uuid))
	if _, ok := e.tasks[taskID]; !ok {
		delete(e.writtenTasks, taskID)
	}
	if len(e.tasks) > 0 || e.log == nil {
		return
	}
	for _, s := range a.updates {
		if s.fw == e.fw.id && s.exec == e.info.ExecutorID.Value {
			return
		}
	}
	if err := e.log.Truncate(0); err != nil {
		klog.ErrorS(err, "Emptying the task log of an executor without tasks", "executor", e.info.ExecutorID.Value)
	}
}

// Kinds of the records of a task log: what Mesos writes in task.info and
// in task.updates.
const (
	logTask         = 2 // a Task
	logUpdateRecord = 3 // a StatusUpdateRecord
)

// appendTaskLog appends one record of a task, in its envelope (field 1:
// the task id; field kind: the record), with one write.
func (a *Agent) appendTaskLog(e *executorRun, taskID string, kind protowire.Number, rec []byte) bool {
	if e.log == nil {
		path := a.taskLogPath(e)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if errors.Is(err, fs.ErrNotExist) {
			if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
				f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			}
		}
		if err != nil {
			klog.ErrorS(err, "Opening the executor's task log", "executor", e.info.ExecutorID.Value)
			return false
		}
		e.log = f
	}
	var env []byte
	env = protowire.AppendTag(env, 1, protowire.BytesType)
	env = protowire.AppendString(env, taskID)
	env = protowire.AppendTag(env, kind, protowire.BytesType)
	env = protowire.AppendBytes(env, rec)
	_, err := e.log.Write(appendRecord(nil, env))
	if a.ctx.Err() != nil {
		// Stop closed the logs; what a step taken under the agent's lock
		// as it stopped still writes is not kept open.
		e.closeTaskLog()
	}
	if err != nil {
		klog.ErrorS(err, "Checkpointing a task", "task", taskID)
		return false
	}
	return true
}

// closeTaskLog closes the executor's task log, if open.
func (e *executorRun) closeTaskLog() {
	if e.log != nil {
		_ = e.log.Close()
		e.log = nil
	}
}

// appendRecord appends msg prefixed by its length, as stout's protobuf::write.
func appendRecord(b, msg []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(msg)))
	return append(b, msg...)
}

// readRecords splits a file of length-prefixed records; a torn last record
// (the agent died writing it) is left out, as the real agent's recovery
// ignores it.
func readRecords(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= 4 {
		n := binary.LittleEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			break
		}
		out = append(out, b[4:4+n])
		b = b[4+n:]
	}
	return out
}

// StatusUpdateRecord and StatusUpdate (src/messages/messages.proto) are
// Mesos' internal messages, absent from mesos-go: encoded field by field.
const (
	recordUpdate = 0 // StatusUpdateRecord.Type UPDATE
	recordAck    = 1 // StatusUpdateRecord.Type ACK
)

func updateRecord(fwID, execID, agentID string, st mesos.TaskStatus) []byte {
	status, err := st.Marshal()
	if err != nil {
		klog.ErrorS(err, "Encoding a status update", "task", st.TaskID.Value)
		return nil
	}
	var u []byte
	u = protowire.AppendTag(u, 1, protowire.BytesType) // framework_id
	u = protowire.AppendBytes(u, idMessage(fwID))
	if execID != "" {
		u = protowire.AppendTag(u, 2, protowire.BytesType) // executor_id
		u = protowire.AppendBytes(u, idMessage(execID))
	}
	u = protowire.AppendTag(u, 3, protowire.BytesType) // slave_id
	u = protowire.AppendBytes(u, idMessage(agentID))
	u = protowire.AppendTag(u, 4, protowire.BytesType) // status
	u = protowire.AppendBytes(u, status)
	u = protowire.AppendTag(u, 5, protowire.Fixed64Type) // timestamp
	u = protowire.AppendFixed64(u, math.Float64bits(st.GetTimestamp()))
	if len(st.UUID) > 0 {
		u = protowire.AppendTag(u, 6, protowire.BytesType) // uuid
		u = protowire.AppendBytes(u, st.UUID)
	}
	var r []byte
	r = protowire.AppendTag(r, 1, protowire.VarintType) // type
	r = protowire.AppendVarint(r, recordUpdate)
	r = protowire.AppendTag(r, 2, protowire.BytesType) // update
	return protowire.AppendBytes(r, u)
}

func ackRecord(uuid []byte) []byte {
	var r []byte
	r = protowire.AppendTag(r, 1, protowire.VarintType) // type
	r = protowire.AppendVarint(r, recordAck)
	r = protowire.AppendTag(r, 3, protowire.BytesType) // uuid
	return protowire.AppendBytes(r, uuid)
}

// idMessage is a FrameworkID, ExecutorID or SlaveID: one string, field 1.
func idMessage(v string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), v)
}

// decodeRecord reads a StatusUpdateRecord: its type, and the update's
// status (UPDATE) or the acknowledged uuid (ACK).
func decodeRecord(b []byte) (typ uint64, st mesos.TaskStatus, uuid []byte, err error) {
	err = protoFields(b, func(num protowire.Number, wt protowire.Type, v []byte, x uint64) error {
		switch {
		case num == 1 && wt == protowire.VarintType:
			typ = x
		case num == 3 && wt == protowire.BytesType:
			uuid = v
		case num == 2 && wt == protowire.BytesType:
			return protoFields(v, func(num protowire.Number, wt protowire.Type, v []byte, _ uint64) error {
				if num == 4 && wt == protowire.BytesType {
					return st.Unmarshal(v)
				}
				return nil
			})
		}
		return nil
	})
	return typ, st, uuid, err
}

// protoFields calls f with each field of a protobuf message: bytes fields'
// contents in v, varints in x.
func protoFields(b []byte, f func(num protowire.Number, wt protowire.Type, v []byte, x uint64) error) error {
	for len(b) > 0 {
		num, wt, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		var x uint64
		switch wt {
		case protowire.VarintType:
			x, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, wt, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, wt, v, x); err != nil {
			return err
		}
	}
	return nil
}

// recoverTasks reads the task log of a recovered executor of a
// checkpointing framework: each task as launched, then its updates
// replayed in order (the latest state, every status, and the updates not
// yet acknowledged, which go back to the status update manager), as
// TaskState::recover and the status update manager's recovery do. A task
// whose terminal update was acknowledged is forgotten, as acknowledge does.
func (a *Agent) recoverTasks(e *executorRun) {
	b, err := os.ReadFile(a.taskLogPath(e))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			klog.ErrorS(err, "Reading the executor's task log", "executor", e.info.ExecutorID.Value)
		}
		return
	}
	pending := map[string][]mesos.TaskStatus{}
	for _, env := range readRecords(b) {
		var id string
		var kind protowire.Number
		var rec []byte
		if err := protoFields(env, func(num protowire.Number, wt protowire.Type, v []byte, _ uint64) error {
			switch {
			case num == 1 && wt == protowire.BytesType:
				id = string(v)
			case (num == logTask || num == logUpdateRecord) && wt == protowire.BytesType:
				kind, rec = num, v
			}
			return nil
		}); err != nil || id == "" {
			klog.ErrorS(err, "Decoding the executor's task log", "executor", e.info.ExecutorID.Value)
			break
		}
		if kind == logTask {
			var t mesos.Task
			if err := t.Unmarshal(rec); err != nil {
				klog.ErrorS(err, "Decoding a checkpointed task", "task", id)
				continue
			}
			e.tasks[id] = &t
			if e.writtenTasks == nil {
				e.writtenTasks = map[string]bool{}
			}
			e.writtenTasks[id] = true
			continue
		}
		typ, st, uuid, err := decodeRecord(rec)
		if err != nil {
			klog.ErrorS(err, "Decoding a checkpointed status update", "task", id)
			continue
		}
		t := e.tasks[id]
		switch typ {
		case recordUpdate:
			if t != nil && st.State != nil {
				if t.State == nil || !isTerminal(*t.State) {
					state := *st.State
					t.State = &state
				}
				t.Statuses = append(t.Statuses, st)
			}
			pending[id] = append(pending[id], st)
		case recordAck:
			p := pending[id]
			if len(p) == 0 || string(p[0].UUID) != string(uuid) {
				continue
			}
			acked := p[0]
			pending[id] = p[1:]
			if len(p) == 1 && acked.State != nil && isTerminal(*acked.State) {
				delete(e.tasks, id)
				delete(e.writtenTasks, id)
			}
		}
	}
	for id, p := range pending {
		if len(p) > 0 {
			a.updates[e.fw.id+"/"+id] = &updateStream{fw: e.fw.id, exec: e.info.ExecutorID.Value, pending: p, backoff: a.cfg.StatusUpdateRetryInterval}
		}
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
			sentTask: c.SentTask, tasks: map[string]*mesos.Task{}, taskInfos: map[string]mesos.TaskInfo{}, killing: map[string]bool{}, written: &c}
		a.recoverTasks(e)
		fw.executors[e.info.ExecutorID.Value] = e
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
