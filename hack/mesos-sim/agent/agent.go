package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/containment"
	"github.com/k8sm/k8sm/hack/mesos-sim/fetcher"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
	"github.com/k8sm/k8sm/hack/netns"
)

type execState int

const (
	registering execState = iota
	running
	terminating
	terminated
)

func (s execState) String() string {
	return [...]string{"REGISTERING", "RUNNING", "TERMINATING", "TERMINATED"}[s]
}

type execKind int

const (
	kindCustom  execKind = iota // the framework's executor binary
	kindCommand                 // a command task, run by the agent's built-in command executor
	kindHollow                  // nothing runs
	kindDefault                 // the agent plays Mesos' default executor (task groups)
)

type launch struct {
	task  *mesos.TaskInfo
	group *mesos.TaskGroupInfo
}

type executorRun struct {
	info        mesos.ExecutorInfo
	fw          *frameworkState
	containerID string
	dir         string
	state       execState
	kind        execKind
	pid         int
	stream      *wire.Stream
	queued      []launch
	tasks       map[string]*mesos.Task
	taskInfos   map[string]mesos.TaskInfo
	killing     map[string]bool
	sentTask    bool
	// recovered: the run was recovered from its checkpoint after an agent
	// restart and has not subscribed since; its launches queued before the
	// restart were not checkpointed, so its STAGING tasks are dropped when
	// it subscribes without them (slave.cpp, Slave::reregisterExecutor).
	recovered bool
	timer     *time.Timer
	stopWatch chan struct{}
	// fetching: the container is being fetched; the process starts after.
	fetching bool
	// pendingTermination is what its tasks end with when the container
	// failed to launch (slave.cpp's Executor::pendingTermination).
	pendingTermination *termination
	// children are a default executor's tasks by task id.
	children map[string]*child
	// written is the executor record last checkpointed (nil: none yet),
	// writtenTasks the tasks checkpointed (checkpoint.go).
	written      *checkpointed
	writtenTasks map[string]bool
}

type termination struct {
	state   mesos.TaskState
	reason  mesos.TaskStatus_Reason
	message string
}

type frameworkState struct {
	info        mesos.FrameworkInfo
	id          string
	executors   map[string]*executorRun
	terminating bool
}

type updateStream struct {
	fw, exec string
	pending  []mesos.TaskStatus
	timer    *time.Timer
	backoff  time.Duration
}

// Agent is one mesos-agent.
type Agent struct {
	cfg  Config
	link MasterLink

	mu         sync.Mutex
	id         string
	info       mesos.AgentInfo
	frameworks map[string]*frameworkState
	updates    map[string]*updateStream // by framework id + "/" + task id
	connected  bool
	// log is the checkpoint, open for appending (checkpoint.go).
	log *os.File

	fetcher *fetcher.Fetcher
	// containers gives executors cgroups of their own (linux launcher).
	containers *containment.Containerizer

	partitioned atomic.Bool
	// mailbox holds the master's messages not yet delivered (conn.post).
	mailMu     sync.Mutex
	mailbox    []func(*Agent)
	delivering bool

	ln     net.Listener
	server *http.Server
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// New creates an agent; Start runs it.
func New(cfg Config, link MasterLink) *Agent {
	cfg.setDefaults()
	return &Agent{cfg: cfg, link: link, frameworks: map[string]*frameworkState{}, updates: map[string]*updateStream{}}
}

// ID is the agent id (known after Start).
func (a *Agent) ID() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

// Endpoint is the ip:port executors reach the agent at (MESOS_AGENT_ENDPOINT).
func (a *Agent) Endpoint() string { return net.JoinHostPort(a.cfg.IP, strconv.Itoa(a.cfg.Port)) }

// PID is the libprocess id of the agent.
func (a *Agent) PID() string { return "slave(1)@" + a.Endpoint() }

// Config returns the agent's configuration (with the port actually used).
func (a *Agent) Config() Config { return a.cfg }

// SetPartitioned cuts (or restores) the agent's network to the master: the
// master's health checks fail and messages both ways are lost.
func (a *Agent) SetPartitioned(p bool) { a.partitioned.Store(p) }

// Partitioned reports the partition state.
func (a *Agent) Partitioned() bool { return a.partitioned.Load() }

// Start listens, recovers checkpointed state and registers with the master.
func (a *Agent) Start(ctx context.Context) error {
	if a.cfg.WorkDir == "" {
		d, err := os.MkdirTemp("", "mesos-sim-agent-")
		if err != nil {
			return fmt.Errorf("starting agent: creating work dir: %w", err)
		}
		a.cfg.WorkDir = d
	}
	cacheDir := a.cfg.FetcherCacheDir
	if cacheDir == "" {
		cacheDir = filepath.Join(a.cfg.WorkDir, "fetch")
	}
	f, err := fetcher.New(cacheDir, a.cfg.FrameworksHome)
	if err != nil {
		return fmt.Errorf("starting agent %s: %w", a.cfg.Hostname, err)
	}
	a.fetcher = f
	if a.containers, err = containment.New(a.cfg.Containerizer); err != nil {
		return fmt.Errorf("starting agent %s: %w", a.cfg.Hostname, err)
	}
	var ln net.Listener
	err = netns.Do(a.cfg.NetNS, func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(a.cfg.IP, strconv.Itoa(a.cfg.Port)))
		return err
	})
	if err != nil {
		return fmt.Errorf("starting agent %s: listening: %w", a.cfg.Hostname, err)
	}
	a.ln = ln
	a.cfg.Port = ln.Addr().(*net.TCPAddr).Port
	a.ctx, a.cancel = context.WithCancel(ctx)
	a.done = make(chan struct{})
	a.server = &http.Server{Handler: a.Handler(), BaseContext: func(net.Listener) context.Context { return a.ctx }}
	go func() {
		if err := a.server.Serve(ln); err != nil && err != http.ErrServerClosed {
			klog.ErrorS(err, "Agent HTTP server stopped", "agent", a.cfg.Hostname)
		}
	}()
	if a.cfg.ID == "" {
		if b, err := os.ReadFile(filepath.Join(a.cfg.WorkDir, "meta", "slaves", "latest")); err == nil {
			a.cfg.ID = string(b)
		}
	}
	a.mu.Lock()
	a.id = a.cfg.ID
	a.recover()
	a.mu.Unlock()
	if err := a.Register(); err != nil {
		a.Stop()
		return err
	}
	go func() {
		<-a.ctx.Done()
		_ = a.server.Close()
		close(a.done)
	}()
	return nil
}

// Register (re-)registers with the master through the link, reporting what runs here.
func (a *Agent) Register() error {
	a.mu.Lock()
	port := int32(a.cfg.Port)
	info := mesos.AgentInfo{Hostname: a.cfg.Hostname, Port: &port, Resources: a.cfg.Resources, Attributes: a.cfg.Attributes}
	if a.id != "" {
		info.ID = &mesos.AgentID{Value: a.id}
	}
	reg := master.AgentRegistration{Info: info, PID: a.PID(), IP: a.cfg.IP, Port: a.cfg.Port}
	for _, fw := range a.frameworks {
		reg.Frameworks = append(reg.Frameworks, fw.info)
		for _, e := range fw.executors {
			if e.state == terminated {
				continue
			}
			reg.Executors = append(reg.Executors, e.info)
			for _, t := range e.tasks {
				reg.Tasks = append(reg.Tasks, *t)
			}
		}
	}
	a.mu.Unlock()
	id, err := a.link.RegisterAgent(reg, (*conn)(a))
	if err != nil {
		return fmt.Errorf("registering agent %s with master: %w", a.cfg.Hostname, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.id = id
	a.cfg.ID = id
	a.connected = true
	info.ID = &mesos.AgentID{Value: id}
	a.info = info
	if err := a.writeMeta(filepath.Join(a.cfg.WorkDir, "meta", "slaves", "latest"), []byte(id)); err != nil {
		klog.ErrorS(err, "Checkpointing agent id", "agent", id)
	}
	if !(a.cfg.Hollow && a.cfg.HollowNoCheckpoint) && a.ctx.Err() == nil {
		// Create the log now, so that a launch only opens it; an agent
		// without executors holds no descriptor (10,000 hollow agents
		// share one process's limit).
		if a.openLog() {
			a.closeLog()
		}
	}
	// Updates that were waiting for a master go out now.
	for _, s := range a.updates {
		a.forwardLocked(s)
	}
	klog.InfoS("Agent registered", "agent", id, "endpoint", a.Endpoint())
	return nil
}

// Stop ends the agent like a crash: executors keep running and can be recovered by a new Agent on the same work dir.
func (a *Agent) Stop() {
	if a.cancel == nil {
		return
	}
	a.cancel()
	a.mu.Lock()
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			if e.stream != nil {
				e.stream.Close()
			}
			if e.timer != nil {
				e.timer.Stop()
			}
			if e.stopWatch != nil {
				close(e.stopWatch)
				e.stopWatch = nil
			}
		}
	}
	a.closeLog()
	for _, s := range a.updates {
		if s.timer != nil {
			s.timer.Stop()
		}
	}
	a.mu.Unlock()
	_ = a.server.Close()
}

// Shutdown kills every executor and unregisters: a clean agent exit. With
// the linux launcher the executors' containers are destroyed, so nothing
// they started runs on.
func (a *Agent) Shutdown() {
	a.mu.Lock()
	var pids []int
	var containers []string
	for _, fw := range a.frameworks {
		for _, e := range fw.executors {
			if e.pid > 0 && e.state != terminated {
				pids = append(pids, e.pid)
				containers = append(containers, e.containerID)
			}
		}
	}
	id := a.id
	a.mu.Unlock()
	for _, pid := range pids {
		killGroup(pid, 9)
	}
	for _, cid := range containers {
		if err := a.containers.Destroy(cid); err != nil {
			klog.ErrorS(err, "Destroying an executor's container at agent shutdown", "container", cid)
		}
	}
	if id != "" && !a.partitioned.Load() {
		a.link.UnregisterAgent(id)
	}
	a.Stop()
}

func (a *Agent) newStatus(taskID mesos.TaskID, execID string, state mesos.TaskState, src mesos.TaskStatus_Source, reason *mesos.TaskStatus_Reason, msg string) mesos.TaskStatus {
	now := float64(time.Now().UnixNano()) / 1e9
	u, _ := uuid.New().MarshalBinary()
	st := mesos.TaskStatus{TaskID: taskID, State: &state, Source: &src, Timestamp: &now, UUID: u, Reason: reason}
	if msg != "" {
		st.Message = &msg
	}
	if execID != "" {
		st.ExecutorID = &mesos.ExecutorID{Value: execID}
	}
	return st
}

// addContainerStatus merges what the containerizer knows of e's container
// into an executor's update, as Slave::_statusUpdate does: the container id,
// the executor's pid, and the agent's address when no network is known.
func (a *Agent) addContainerStatus(e *executorRun, st *mesos.TaskStatus) {
	cs := st.ContainerStatus
	if cs == nil {
		cs = &mesos.ContainerStatus{}
	}
	if cs.ContainerID == nil {
		cs.ContainerID = &mesos.ContainerID{Value: e.containerID}
	}
	if cs.ExecutorPID == nil && e.pid > 0 {
		pid := uint32(e.pid)
		cs.ExecutorPID = &pid
	}
	if len(cs.NetworkInfos) == 0 {
		ip := a.cfg.IP
		cs.NetworkInfos = []mesos.NetworkInfo{{IPAddresses: []mesos.NetworkInfo_IPAddress{{IPAddress: &ip}}}}
	}
	st.ContainerStatus = cs
}

func reasonPtr(r mesos.TaskStatus_Reason) *mesos.TaskStatus_Reason { return &r }

// statusUpdateLocked records a task's new state and hands the update to the
// status update manager, which forwards updates of one task in order, one at
// a time, until each is acknowledged.
func (a *Agent) statusUpdateLocked(fwID string, e *executorRun, st mesos.TaskStatus) {
	aid := mesos.AgentID{Value: a.id}
	st.AgentID = &aid
	if st.ExecutorID == nil && e != nil {
		st.ExecutorID = &mesos.ExecutorID{Value: e.info.ExecutorID.Value}
	}
	if st.Timestamp == nil {
		// createStatusUpdate: the update's timestamp is the status's or
		// now, and the master hands the scheduler the update's.
		now := float64(time.Now().UnixNano()) / 1e9
		st.Timestamp = &now
	}
	if e != nil && st.GetSource() == mesos.SOURCE_EXECUTOR {
		a.addContainerStatus(e, &st)
	}
	key := fwID + "/" + st.TaskID.Value
	s := a.updates[key]
	if s != nil {
		for _, p := range s.pending {
			if string(p.UUID) == string(st.UUID) {
				return // duplicate, e.g. resent by a re-subscribing executor
			}
		}
	}
	if e != nil && len(st.UUID) > 0 {
		// Like the real status update manager, remember every update of a
		// task: an executor re-sending an update that was already delivered
		// and acknowledged (it missed our ACKNOWLEDGED before a restart)
		// must not deliver it twice.
		if t := e.tasks[st.TaskID.Value]; t != nil {
			for _, prev := range t.Statuses {
				if string(prev.UUID) == string(st.UUID) {
					return
				}
			}
		}
	}
	if e != nil {
		if t := e.tasks[st.TaskID.Value]; t != nil && st.State != nil {
			if t.State == nil || !isTerminal(*t.State) {
				state := *st.State
				t.State = &state
			}
			t.Statuses = append(t.Statuses, st)
		}
		if e.fw.terminating {
			// Nobody is left to acknowledge updates of a removed framework.
			return
		}
	}
	if s == nil {
		execID := ""
		if e != nil {
			execID = e.info.ExecutorID.Value
		}
		s = &updateStream{fw: fwID, exec: execID, backoff: a.cfg.StatusUpdateRetryInterval}
		a.updates[key] = s
	}
	s.pending = append(s.pending, st)
	if e != nil {
		// Checkpointed before it is sent: a crash now must not lose it.
		a.checkpointUpdate(e, st)
	}
	if len(s.pending) == 1 {
		a.forwardLocked(s)
	}
}

func (a *Agent) forwardLocked(s *updateStream) {
	if len(s.pending) == 0 || a.ctx.Err() != nil {
		return
	}
	head := s.pending[0]
	if !a.partitioned.Load() && a.connected {
		u := master.StatusUpdate{FrameworkID: s.fw, ExecutorID: s.exec, Status: head}
		id := a.id
		// The master takes its own lock; never call it while holding ours... except
		// that the master never calls back synchronously, so only ordering matters:
		// run it on a goroutine per stream and keep updates of a stream ordered.
		go a.link.StatusUpdate(id, u)
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	wait := s.backoff
	s.timer = time.AfterFunc(wait, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if len(s.pending) > 0 && string(s.pending[0].UUID) == string(head.UUID) {
			s.backoff *= 2
			if s.backoff > MaxStatusUpdateRetryInterval {
				s.backoff = MaxStatusUpdateRetryInterval
			}
			klog.V(2).InfoS("Resending unacknowledged status update", "task", head.TaskID.Value, "state", head.GetState())
			a.forwardLocked(s)
		}
	})
}

func isTerminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TASK_FINISHED, mesos.TASK_FAILED, mesos.TASK_KILLED, mesos.TASK_ERROR,
		mesos.TASK_LOST, mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR:
		return true
	}
	return false
}

func (a *Agent) acknowledge(fwID, taskID string, id []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := fwID + "/" + taskID
	s := a.updates[key]
	if s == nil || len(s.pending) == 0 || string(s.pending[0].UUID) != string(id) {
		return // duplicate or stale acknowledgement
	}
	acked := s.pending[0]
	s.pending = s.pending[1:]
	s.backoff = a.cfg.StatusUpdateRetryInterval
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	fw := a.frameworks[fwID]
	var e *executorRun
	if fw != nil {
		e = fw.executors[s.exec]
	}
	if len(s.pending) > 0 {
		a.forwardLocked(s)
	} else {
		delete(a.updates, key)
		if acked.State != nil && isTerminal(*acked.State) && e != nil {
			delete(e.tasks, taskID)
			delete(e.taskInfos, taskID)
		}
	}
	if e != nil {
		a.checkpointAck(e, taskID, id)
		a.maybeRemoveExecutorLocked(e)
	}
}

// maybeRemoveExecutorLocked forgets a terminated executor once nothing about it is left to deliver.
func (a *Agent) maybeRemoveExecutorLocked(e *executorRun) {
	if e.state != terminated {
		return
	}
	for _, s := range a.updates {
		if s.fw == e.fw.id && s.exec == e.info.ExecutorID.Value {
			return
		}
	}
	delete(e.fw.executors, e.info.ExecutorID.Value)
	if len(e.fw.executors) == 0 {
		delete(a.frameworks, e.fw.id)
	}
	a.checkpointRemoved(e)
}
