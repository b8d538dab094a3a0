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
// sim writes those same records, each in an envelope naming its
// framework, executor and task, appended to one open file per agent
// (meta/slaves/<agent>/checkpoint.log) instead of task.info and
// task.updates in a directory per task under directories per framework,
// executor and run: on these hosts creating a file or a directory costs
// 100–200 µs of CPU against 2 µs for an append to an open file, and
// hollow agents share the cores with what a benchmark measures. A real
// agent's checkpoint costs its own machine.
//
// The executor itself is described by a record of the sim's own (JSON:
// what its containerizer and launcher would keep, the pid, the container,
// the kind), appended when it changes. It is kept for executors of
// non-checkpointing frameworks too, only so that a restarted agent can
// find and kill them, as the real agent destroys such orphaned
// containers. An executor the agent forgets is marked removed, and the
// log is emptied whenever the agent is left with no executor.

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

func (a *Agent) logPath() string {
	return filepath.Join(a.cfg.WorkDir, "meta", "slaves", a.id, "checkpoint.log")
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
		if !a.appendLog(e, "", logExecutor, b) {
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
		if !a.appendLog(e, id, logTask, b) {
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
		a.appendLog(e, id, logUpdateRecord, rec)
	}
}

// checkpointAck records the acknowledgement of a task's oldest pending update.
func (a *Agent) checkpointAck(e *executorRun, taskID string, uuid []byte) {
	if !a.checkpointing(e) || !e.fw.info.GetCheckpoint() {
		return
	}
	a.appendLog(e, taskID, logUpdateRecord, ackRecord(uuid))
	if _, ok := e.tasks[taskID]; !ok {
		delete(e.writtenTasks, taskID)
	}
}

// checkpointRemoved records that the agent forgot an executor; left with
// none, it empties its log, so that it does not grow without end.
func (a *Agent) checkpointRemoved(e *executorRun) {
	if !a.checkpointing(e) || e.written == nil {
		return
	}
	a.appendLog(e, "", logRemoved, nil)
	if len(a.frameworks) > 0 || len(a.updates) > 0 || a.log == nil {
		return
	}
	if err := a.log.Truncate(0); err != nil {
		klog.ErrorS(err, "Emptying the checkpoint of an agent without executors", "agent", a.id)
	}
	a.closeLog()
}

// Fields of a checkpoint log's envelope; the record is one of logExecutor
// (the executor record), logTask (what Mesos writes in task.info),
// logUpdateRecord (what it appends to task.updates) or logRemoved.
const (
	logTaskID       = 1
	logTask         = 2 // a Task
	logUpdateRecord = 3 // a StatusUpdateRecord
	logFramework    = 4
	logExecutorID   = 5
	logExecutor     = 6 // the executor record, JSON
	logRemoved      = 7 // the executor was forgotten
)

// appendLog appends one record about e (and its task taskID, if any), in
// its envelope, with one write.
func (a *Agent) appendLog(e *executorRun, taskID string, kind protowire.Number, rec []byte) bool {
	if !a.openLog() {
		return false
	}
	var env []byte
	env = protowire.AppendTag(env, logFramework, protowire.BytesType)
	env = protowire.AppendString(env, e.fw.id)
	env = protowire.AppendTag(env, logExecutorID, protowire.BytesType)
	env = protowire.AppendString(env, e.info.ExecutorID.Value)
	if taskID != "" {
		env = protowire.AppendTag(env, logTaskID, protowire.BytesType)
		env = protowire.AppendString(env, taskID)
	}
	env = protowire.AppendTag(env, kind, protowire.BytesType)
	env = protowire.AppendBytes(env, rec)
	_, err := a.log.Write(appendRecord(nil, env))
	if a.ctx.Err() != nil {
		// Stop closed the log; what a step taken under the agent's lock
		// as it stopped still writes does not keep it open.
		a.closeLog()
	}
	if err != nil {
		klog.ErrorS(err, "Checkpointing", "executor", e.info.ExecutorID.Value, "task", taskID)
		return false
	}
	return true
}

// openLog opens the agent's checkpoint log for appending, unless it is
// open. Register creates it, so that creating it is not a launch's cost;
// it stays open while the agent has executors.
func (a *Agent) openLog() bool {
	if a.log != nil {
		return true
	}
	path := a.logPath()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
			f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		}
	}
	if err != nil {
		klog.ErrorS(err, "Opening the agent's checkpoint", "agent", a.id)
		return false
	}
	a.log = f
	return true
}

// closeLog closes the agent's checkpoint log, if open.
func (a *Agent) closeLog() {
	if a.log != nil {
		_ = a.log.Close()
		a.log = nil
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

// logEntry is a record of a checkpoint log about one executor.
type logEntry struct {
	task string
	kind protowire.Number
	rec  []byte
}

// replayTasks rebuilds a recovered executor's tasks from its records:
// each task as launched, then its updates replayed in order (the latest
// state, every status, and the updates not yet acknowledged, which go back
// to the status update manager), as TaskState::recover and the status
// update manager's recovery do. A task whose terminal update was
// acknowledged is forgotten, as acknowledge does.
func (a *Agent) replayTasks(e *executorRun, entries []logEntry) {
	pending := map[string][]mesos.TaskStatus{}
	for _, en := range entries {
		id := en.task
		if id == "" {
			continue
		}
		if en.kind == logTask {
			var t mesos.Task
			if err := t.Unmarshal(en.rec); err != nil {
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
		if en.kind != logUpdateRecord {
			continue
		}
		typ, st, uuid, err := decodeRecord(en.rec)
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

// readLog reads the agent's checkpoint log: the records of each executor
// not removed, in order, with its latest executor record and its
// envelopes as written (raw); stale says whether the log holds removed
// executors.
func (a *Agent) readLog() (order []string, records map[string]*checkpointed, entries map[string][]logEntry, raw map[string][][]byte, stale bool) {
	records, entries, raw = map[string]*checkpointed{}, map[string][]logEntry{}, map[string][][]byte{}
	b, err := os.ReadFile(a.logPath())
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			klog.ErrorS(err, "Reading the agent's checkpoint", "agent", a.id)
		}
		return nil, records, entries, raw, false
	}
	for _, env := range readRecords(b) {
		var fw, exec string
		var en logEntry
		if err := protoFields(env, func(num protowire.Number, wt protowire.Type, v []byte, _ uint64) error {
			switch {
			case wt != protowire.BytesType:
			case num == logFramework:
				fw = string(v)
			case num == logExecutorID:
				exec = string(v)
			case num == logTaskID:
				en.task = string(v)
			default:
				en.kind, en.rec = num, v
			}
			return nil
		}); err != nil {
			klog.ErrorS(err, "Decoding the agent's checkpoint", "agent", a.id)
			break
		}
		key := fw + "/" + exec
		if en.kind == logRemoved {
			delete(records, key)
			delete(entries, key)
			delete(raw, key)
			stale = true
			continue
		}
		raw[key] = append(raw[key], env)
		switch en.kind {
		case logExecutor:
			var c checkpointed
			if err := json.Unmarshal(en.rec, &c); err != nil {
				klog.ErrorS(err, "Decoding an executor checkpoint", "executor", exec)
				continue
			}
			if _, ok := records[key]; !ok {
				order = append(order, key)
			}
			records[key] = &c
		default:
			entries[key] = append(entries[key], en)
		}
	}
	return order, records, entries, raw, stale
}

// compactLog rewrites the checkpoint log with the envelopes of the
// executors in keep only, as they were written.
func (a *Agent) compactLog(order []string, keep map[string]bool, raw map[string][][]byte) {
	var b []byte
	for _, key := range order {
		if keep[key] {
			for _, env := range raw[key] {
				b = appendRecord(b, env)
			}
		}
	}
	if err := a.writeMeta(a.logPath(), b); err != nil {
		klog.ErrorS(err, "Compacting the agent's checkpoint", "agent", a.id)
	}
}

// recover re-adopts checkpointed executors. Live ones get
// ExecutorReregistrationTimeout to re-subscribe; dead ones are reported.
func (a *Agent) recover() {
	if a.id == "" {
		return
	}
	order, records, entries, raw, stale := a.readLog()
	// What recovery forgets (the executors of non-checkpointing
	// frameworks, killed below) leaves the log first, with the records of
	// executors forgotten before the agent stopped; before anything is
	// appended to it.
	keep := map[string]bool{}
	for key, c := range records {
		if c.Framework.GetCheckpoint() {
			keep[key] = true
		}
	}
	if stale || len(keep) < len(records) {
		a.compactLog(order, keep, raw)
	}
	for _, key := range order {
		c := records[key]
		if c == nil {
			continue // removed
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
			continue
		}
		fw := a.frameworks[fwID]
		if fw == nil {
			fw = &frameworkState{id: fwID, info: c.Framework, executors: map[string]*executorRun{}}
			a.frameworks[fwID] = fw
		}
		e := &executorRun{info: c.Executor, fw: fw, containerID: c.ContainerID, dir: c.Directory, pid: c.PID, kind: c.Kind,
			sentTask: c.SentTask, tasks: map[string]*mesos.Task{}, taskInfos: map[string]mesos.TaskInfo{}, killing: map[string]bool{}, written: c}
		a.replayTasks(e, entries[key])
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
