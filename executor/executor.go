// Package executor is the k8sm Mesos executor: it receives pods as Mesos
// tasks, hands exactly those pods to an embedded kubelet (under the kubelet's
// "api" source, so they are ordinary API pods to it), and maps each pod's
// life, as the kubelet writes it to the API server, to Mesos task states.
//
// One goroutine owns all state (the task registry); the agent connection,
// the pod informer and timers feed it through channels.
package executor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/executor"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/executor/agentconn"
	"github.com/k8sm/k8sm/executor/config"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Mesos is the executor's connection to its agent (agentconn.Conn).
type Mesos interface {
	Run(ctx context.Context, h agentconn.Handler) error
	Update(ctx context.Context, status mesos.TaskStatus) error
	State() agentconn.State
}

// Kubelet runs pods. Start runs it as node and feeds it every set of pods
// received on pods (each set replaces the previous one); it returns once
// the kubelet runs, or why it could not start.
type Kubelet interface {
	Start(ctx context.Context, node string, pods <-chan []*v1.Pod) error
}

// Runtime tells what really runs, from the container runtime.
type Runtime interface {
	// RunningContainers counts the pod's running containers.
	RunningContainers(ctx context.Context, uid types.UID) (int, error)
	// ReadySandboxes counts the pod's sandboxes not yet stopped.
	ReadySandboxes(ctx context.Context, uid types.UID) (int, error)
}

// Options configure Run.
type Options struct {
	Env config.Env
	// NodeName overrides the node name; by default it is the agent's
	// hostname, which is the name of the Node the broker mirrored.
	NodeName string
	Client   kubernetes.Interface
	Mesos    Mesos // nil: a connection made from Env
	Kubelet  Kubelet
	Runtime  Runtime
	// CheckpointFile keeps the task registry across executor restarts
	// (default <sandbox>/k8sm-executor.json).
	CheckpointFile string
	// BindTimeout bounds how long a launched pod may be missing from the
	// API server (its Binding not yet visible) before its task fails.
	BindTimeout time.Duration
	// ImagePullTimeout bounds how long a container may wait for its image.
	ImagePullTimeout time.Duration
	// StopTimeout is added to a pod's grace period before a stop is
	// reported even though containers still run.
	StopTimeout time.Duration
	// Restart, when it receives, makes the executor checkpoint and return
	// ErrRestart, leaving its pods running for the next process to adopt.
	Restart <-chan struct{}
	// Poll is the period of the checks that have no event (default 500ms).
	Poll time.Duration
}

// ErrRestart is returned by Run after a restart request; the pods run on.
var ErrRestart = errors.New("executor restart requested")

func (o *Options) setDefaults() {
	if o.BindTimeout <= 0 {
		o.BindTimeout = 2 * time.Minute
	}
	if o.ImagePullTimeout <= 0 {
		o.ImagePullTimeout = 5 * time.Minute
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.CheckpointFile == "" && o.Env.Directory != "" {
		o.CheckpointFile = o.Env.Directory + "/k8sm-executor.json"
	}
}

type phase string

const (
	// held: launched, waiting for the pod to be visible in the API server, bound here.
	phaseHeld phase = "held"
	// handed: the kubelet runs it.
	phaseHanded phase = "handed"
	// stopping: the kubelet stops it; the end state is sent when nothing runs.
	phaseStopping phase = "stopping"
	// done: the terminal state was sent.
	phaseDone phase = "done"
)

// task is one pod task. Exported fields are checkpointed.
type task struct {
	Info     mesos.TaskInfo    `json:"info"`
	Ref      taskinfo.PodRef   `json:"ref"`
	Phase    phase             `json:"phase"`
	Sent     *mesos.TaskState  `json:"sent,omitempty"`
	Launched time.Time         `json:"launched"`
	LastPod  *v1.Pod           `json:"lastPod,omitempty"`
	End      *mesos.TaskStatus `json:"end,omitempty"` // state to send once stopped
	Grace    *int64            `json:"grace,omitempty"`
	StopBy   time.Time         `json:"stopBy,omitzero"`
	// Lingering: done, but its pod is still in the API server, so the
	// kubelet keeps it, as a kubelet keeps every pod bound to its node: it
	// deletes from the API server only pods it has (a pod deleted
	// gracefully would stay Terminating forever), and it writes the final
	// status of a pod it stopped only while it has it (a stale status, e.g.
	// Pending, would stay over the Failed the broker wrote).
	Lingering bool `json:"lingering,omitempty"`

	pullSince time.Time
}

type executorState struct {
	Node  string           `json:"node"`
	Tasks map[string]*task `json:"tasks"`
	Conn  agentconn.State  `json:"conn"`
}

type loop struct {
	o          Options
	conn       Mesos
	logger     klog.Logger
	events     chan *executor.Event
	podsC      chan struct{}
	toKube     chan []*v1.Pod
	tasks      map[string]*task
	node       string
	lister     corelisters.PodLister
	synced     func() bool
	started    bool // kubelet started and first pod set sent
	lastSet    []*v1.Pod
	dirty      bool
	savedBytes []byte
	// shutdown: SHUTDOWN received or the agent is gone; exit once all tasks are done.
	shutdown   bool
	shutdownBy time.Time
}

// Run runs the executor until SHUTDOWN (nil), the agent is gone (an error
// wrapping agentconn.ErrAgentGone), a restart request (ErrRestart), or ctx
// ends (its pods are stopped first).
func Run(ctx context.Context, o Options) error {
	o.setDefaults()
	l := &loop{
		o:      o,
		logger: klog.FromContext(ctx),
		events: make(chan *executor.Event, 256),
		podsC:  make(chan struct{}, 1),
		toKube: make(chan []*v1.Pod, 1),
		tasks:  map[string]*task{},
		node:   o.NodeName,
	}
	st, err := loadCheckpoint(o.CheckpointFile)
	if err != nil {
		return err
	}
	if st != nil {
		l.tasks = st.Tasks
		if l.node == "" {
			l.node = st.Node
		}
		l.logger.Info("Restored executor state", "tasks", len(st.Tasks), "node", st.Node)
	}
	l.conn = o.Mesos
	if l.conn == nil {
		var restored agentconn.State
		if st != nil {
			restored = st.Conn
		}
		l.conn = agentconn.New(o.Env, restored, nil)
	}
	return l.run(ctx)
}

func (l *loop) run(ctx context.Context) error {
	connCtx, stopConn := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConn()
	connDone := make(chan error, 1)
	go func() {
		connDone <- l.conn.Run(connCtx, func(ctx context.Context, e *executor.Event) {
			select {
			case l.events <- e:
			case <-ctx.Done():
			}
		})
	}()
	kubeCtx, stopKube := context.WithCancel(context.WithoutCancel(ctx))
	defer stopKube()
	// A task the agent handed to an earlier process of this executor that
	// did not reach its registry is still this executor's to run.
	for _, t := range l.conn.State().Tasks {
		if _, ok := l.tasks[t.TaskID.Value]; !ok {
			l.launch(kubeCtx, t)
		}
	}
	if l.node != "" {
		if err := l.startKubelet(kubeCtx); err != nil {
			return err
		}
	}
	tick := time.NewTicker(l.o.Poll)
	defer tick.Stop()
	ctxDone := ctx.Done()
	var exitErr error
	for {
		select {
		case e := <-l.events:
			if err := l.handle(kubeCtx, e); err != nil {
				return err
			}
		case <-l.podsC:
		case <-tick.C:
		case <-l.o.Restart:
			l.logger.Info("Restart requested: checkpointing and leaving the pods running")
			// Read nothing more from the agent, and keep what was read: the
			// next process must know every task the agent handed over.
			stopConn()
			if connDone != nil {
				<-connDone
			}
			for len(l.events) > 0 {
				if err := l.handle(kubeCtx, <-l.events); err != nil {
					return err
				}
			}
			return errors.Join(ErrRestart, l.save())
		case err := <-connDone:
			connDone = nil
			l.logger.Error(err, "Lost the agent, stopping every pod")
			exitErr = err
			if exitErr == nil {
				exitErr = fmt.Errorf("%w: connection ended", agentconn.ErrAgentGone)
			}
			l.beginShutdown(ctx, "the Mesos agent is gone", l.o.StopTimeout)
		case <-ctxDone:
			ctxDone = nil
			l.logger.Info("Executor stopping, stopping every pod")
			exitErr = ctx.Err()
			l.beginShutdown(ctx, "the executor was stopped", l.o.Env.ShutdownGracePeriod)
		}
		l.reconcile(kubeCtx)
		if err := l.save(); err != nil {
			l.logger.Error(err, "Checkpointing the executor state")
		}
		if l.shutdown && l.allDone() {
			l.waitSandboxes(ctx)
			l.logger.Info("Every pod is stopped, executor exits")
			return exitErr
		}
	}
}

func (l *loop) startKubelet(ctx context.Context) error {
	if l.o.Kubelet == nil || l.lister != nil {
		return nil
	}
	factory := informers.NewSharedInformerFactoryWithOptions(l.o.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", l.node).String()
	}))
	inf := factory.Core().V1().Pods()
	poke := func() {
		select {
		case l.podsC <- struct{}{}:
		default:
		}
	}
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	})
	l.lister = inf.Lister()
	l.synced = inf.Informer().HasSynced
	factory.Start(ctx.Done())
	l.logger.Info("Starting the kubelet", "node", l.node)
	if err := l.o.Kubelet.Start(ctx, l.node, l.toKube); err != nil {
		return fmt.Errorf("starting the kubelet of node %s: %w", l.node, err)
	}
	return nil
}

func (l *loop) handle(ctx context.Context, e *executor.Event) error {
	switch e.Type {
	case executor.Event_SUBSCRIBED:
		host := e.Subscribed.AgentInfo.GetHostname()
		l.logger.Info("Subscribed to the agent", "agent", e.Subscribed.AgentInfo.GetID().GetValue(), "hostname", host)
		if l.node == "" {
			l.node = host
		}
		return l.startKubelet(ctx)
	case executor.Event_LAUNCH:
		l.launch(ctx, e.Launch.Task)
	case executor.Event_LAUNCH_GROUP:
		for _, t := range e.LaunchGroup.TaskGroup.Tasks {
			l.fail(ctx, &task{Info: t, Launched: time.Now()}, "task groups are not supported by the k8sm executor: launch each pod as its own task", mesos.REASON_TASK_INVALID)
		}
	case executor.Event_KILL:
		l.kill(ctx, e.Kill.TaskID.Value, e.Kill.KillPolicy)
	case executor.Event_ACKNOWLEDGED:
		l.dirty = true
	case executor.Event_MESSAGE:
		l.logger.V(2).Info("Framework message ignored", "bytes", len(e.Message.Data))
	case executor.Event_SHUTDOWN:
		l.logger.Info("SHUTDOWN from the agent: stopping every pod", "grace", l.o.Env.ShutdownGracePeriod)
		l.beginShutdown(ctx, "the executor was shut down", l.o.Env.ShutdownGracePeriod)
	case executor.Event_ERROR:
		l.logger.Info("Agent reported an error", "message", e.Error.GetMessage())
	}
	return nil
}

func (l *loop) launch(ctx context.Context, info mesos.TaskInfo) {
	id := info.TaskID.Value
	if t, ok := l.tasks[id]; ok && t.Phase != phaseDone {
		l.logger.Info("LAUNCH of a task that already runs ignored", "task", id)
		return
	}
	t := &task{Info: info, Launched: time.Now(), Phase: phaseHeld}
	pod, err := taskinfo.Decode(&info)
	if err != nil {
		l.fail(ctx, t, err.Error(), mesos.REASON_TASK_INVALID)
		return
	}
	t.Ref = taskinfo.RefOf(pod)
	if pod.Spec.NodeName != "" && l.node != "" && pod.Spec.NodeName != l.node {
		l.fail(ctx, t, fmt.Sprintf("pod %s is bound to node %q, but this executor runs node %q", t.Ref, pod.Spec.NodeName, l.node), mesos.REASON_TASK_INVALID)
		return
	}
	for _, o := range l.tasks {
		if o.Phase == phaseHeld && o.Ref.UID == pod.UID {
			// Another launch attempt of the pod, also waiting for its
			// Binding: the Binding names the attempt that runs
			// (reconcileHeld).
			continue
		}
		if o.Phase != phaseDone && o.Ref.UID == pod.UID {
			l.fail(ctx, t, fmt.Sprintf("pod %s already runs as task %s: a pod runs at most once", t.Ref, o.Info.TaskID.Value), mesos.REASON_TASK_INVALID)
			return
		}
	}
	l.tasks[id] = t
	l.dirty = true
	l.logger.Info("Pod launched, waiting for it in the API server", "task", id, "pod", klog.KRef(pod.Namespace, pod.Name))
}

func (l *loop) kill(ctx context.Context, id string, policy *mesos.KillPolicy) {
	t, ok := l.tasks[id]
	if !ok {
		// The agent only sends KILL for tasks it gave us; a restarted
		// executor without checkpoint knows none: say it is gone.
		l.send(ctx, &task{Info: mesos.TaskInfo{TaskID: mesos.TaskID{Value: id}}}, mesos.TaskStatus{
			State: mesos.TASK_LOST.Enum(), Message: ptr("the k8sm executor does not know this task"), Reason: mesos.REASON_RECONCILIATION.Enum()})
		return
	}
	if t.Phase == phaseDone {
		return
	}
	var grace *int64
	if gp := policy.GetGracePeriod(); gp != nil {
		s := gp.Nanoseconds / int64(time.Second)
		grace = &s
	}
	l.logger.Info("KILL: stopping the pod", "task", id, "pod", t.Ref)
	l.stop(t, mesos.TaskStatus{State: mesos.TASK_KILLED.Enum(), Message: ptr("killed by the scheduler")}, grace)
}

// beginShutdown stops every pod within grace (capped by each pod's own).
func (l *loop) beginShutdown(_ context.Context, why string, grace time.Duration) {
	if l.shutdown {
		return
	}
	l.shutdown = true
	l.shutdownBy = time.Now().Add(grace)
	// Leave a moment of the agent's grace period for the updates.
	secs := int64((grace - grace/5) / time.Second)
	for _, t := range l.tasks {
		switch t.Phase {
		case phaseDone:
		case phaseStopping:
			if t.Grace == nil || *t.Grace > secs {
				t.Grace = &secs
				t.StopBy = l.shutdownBy
			}
		default:
			l.stop(t, mesos.TaskStatus{State: mesos.TASK_KILLED.Enum(), Message: ptr("pod stopped: " + why),
				Reason: mesos.REASON_EXECUTOR_TERMINATED.Enum()}, &secs)
			t.StopBy = l.shutdownBy
		}
	}
}

// stop asks the kubelet to stop the pod (gracefully: it is handed to the
// kubelet as deleted, with the pod's grace period or a shorter one) and
// sends end once nothing of it runs.
func (l *loop) stop(t *task, end mesos.TaskStatus, grace *int64) {
	if t.Phase == phaseDone || t.Phase == phaseStopping {
		return
	}
	pg := int64(v1.DefaultTerminationGracePeriodSeconds)
	if t.LastPod != nil && t.LastPod.Spec.TerminationGracePeriodSeconds != nil {
		pg = *t.LastPod.Spec.TerminationGracePeriodSeconds
	}
	if grace == nil || *grace > pg {
		grace = &pg
	}
	if *grace < 0 {
		zero := int64(0)
		grace = &zero
	}
	t.Phase, t.End, t.Grace = phaseStopping, &end, grace
	if t.LastPod != nil && t.LastPod.DeletionTimestamp == nil {
		// The kubelet stops a deleted pod gracefully, as on any node.
		p := t.LastPod.DeepCopy()
		now := metav1.Now()
		p.DeletionTimestamp = &now
		t.LastPod = p
	}
	t.StopBy = time.Now().Add(time.Duration(*grace)*time.Second + l.o.StopTimeout)
	l.dirty = true
}

func (l *loop) fail(ctx context.Context, t *task, msg string, reason mesos.TaskStatus_Reason) {
	l.logger.Info("Task failed", "task", t.Info.TaskID.Value, "message", msg)
	l.send(ctx, t, mesos.TaskStatus{State: mesos.TASK_FAILED.Enum(), Message: &msg, Reason: reason.Enum()})
	t.Phase = phaseDone
	if t.Info.TaskID.Value != "" {
		l.tasks[t.Info.TaskID.Value] = t
	}
	l.dirty = true
}

func (l *loop) send(ctx context.Context, t *task, st mesos.TaskStatus) {
	st.TaskID = t.Info.TaskID
	if err := l.conn.Update(ctx, st); err != nil {
		// Kept by the connection until acknowledged: re-sent on re-subscription.
		l.logger.Error(err, "Status update not taken by the agent now", "task", t.Info.TaskID.Value)
	}
	s := st.GetState()
	t.Sent = &s
	l.dirty = true
}

// reconcile moves every task along what the API server and the runtime say,
// and gives the kubelet its pods.
func (l *loop) reconcile(ctx context.Context) {
	ready := l.lister != nil && l.synced()
	for _, t := range l.tasks {
		switch t.Phase {
		case phaseHeld:
			if ready {
				l.reconcileHeld(ctx, t)
			}
		case phaseHanded:
			if ready {
				l.reconcileHanded(ctx, t)
			}
		case phaseStopping:
			l.reconcileStopping(ctx, t)
		case phaseDone:
			if ready && t.Lingering {
				l.reconcileLingering(t)
			}
		}
	}
	// Forget finished tasks once the agent has them (nothing unacknowledged).
	pending := map[string]bool{}
	for _, u := range l.conn.State().Updates {
		pending[u.Status.TaskID.Value] = true
	}
	for id, t := range l.tasks {
		if t.Phase == phaseDone && !t.Lingering && !pending[id] && time.Since(t.Launched) > time.Minute {
			delete(l.tasks, id)
			l.dirty = true
		}
	}
	if ready {
		l.feedKubelet()
	}
}

func (l *loop) apiPod(t *task) (*v1.Pod, error) {
	return l.lister.Pods(t.Ref.Namespace).Get(t.Ref.Name)
}

func (l *loop) reconcileHeld(ctx context.Context, t *task) {
	pod, err := l.apiPod(t)
	switch {
	case err == nil && pod.UID == t.Ref.UID:
		if runs := pod.Annotations[taskinfo.TaskIDAnnotation]; runs != "" && runs != t.Info.TaskID.Value && taskinfo.PodUID(runs) == pod.UID {
			l.fail(ctx, t, fmt.Sprintf("pod %s is bound as task %s, another launch attempt", t.Ref, runs), mesos.REASON_TASK_INVALID)
			return
		}
		for _, o := range l.tasks {
			if o != t && o.Ref.UID == t.Ref.UID && (o.Phase == phaseHanded || o.Phase == phaseStopping) {
				l.fail(ctx, t, fmt.Sprintf("pod %s already runs as task %s: a pod runs at most once", t.Ref, o.Info.TaskID.Value), mesos.REASON_TASK_INVALID)
				return
			}
		}
		if err := l.checkHostPorts(t, pod); err != nil {
			l.fail(ctx, t, err.Error(), mesos.REASON_TASK_INVALID)
			return
		}
		t.LastPod = pod
		t.Phase = phaseHanded
		l.logger.Info("Pod handed to the kubelet", "task", t.Info.TaskID.Value, "pod", t.Ref)
		l.send(ctx, t, mesos.TaskStatus{State: mesos.TASK_STARTING.Enum(), Message: ptr("pod handed to the kubelet of node " + l.node)})
		l.reconcileHanded(ctx, t)
		return
	case err == nil:
		l.fail(ctx, t, fmt.Sprintf("pod %s was replaced: the pod of that name on this node has UID %s", t.Ref, pod.UID), mesos.REASON_TASK_INVALID)
		return
	case !apierrors.IsNotFound(err):
		return
	}
	if time.Since(t.Launched) < l.o.BindTimeout {
		return // its Binding may not be visible yet: hold it
	}
	// Say precisely why it never came.
	msg := fmt.Sprintf("pod %s did not appear bound to node %s within %v", t.Ref, l.node, l.o.BindTimeout)
	live, gerr := l.o.Client.CoreV1().Pods(t.Ref.Namespace).Get(ctx, t.Ref.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(gerr):
		msg = fmt.Sprintf("pod %s does not exist in the API server", t.Ref)
	case gerr == nil && live.UID != t.Ref.UID:
		msg = fmt.Sprintf("pod %s was replaced: the API server has UID %s", t.Ref, live.UID)
	case gerr == nil && live.Spec.NodeName != l.node:
		msg = fmt.Sprintf("pod %s is bound to node %q, not to this node %q", t.Ref, live.Spec.NodeName, l.node)
	}
	l.fail(ctx, t, msg, mesos.REASON_TASK_INVALID)
}

func (l *loop) reconcileHanded(ctx context.Context, t *task) {
	pod, err := l.apiPod(t)
	if err != nil || pod.UID != t.Ref.UID {
		if err != nil && !apierrors.IsNotFound(err) {
			return
		}
		// The kubelet deletes a pod from the API server once it stopped it
		// (or the pod was force-deleted): the task was killed.
		l.logger.Info("Pod deleted from the API server", "task", t.Info.TaskID.Value, "pod", t.Ref)
		zero := int64(0)
		if t.LastPod != nil && t.LastPod.DeletionGracePeriodSeconds != nil {
			zero = *t.LastPod.DeletionGracePeriodSeconds
		}
		l.stop(t, mesos.TaskStatus{State: mesos.TASK_KILLED.Enum(), Message: ptr("pod deleted from the API server")}, &zero)
		return
	}
	if err := l.checkHostPorts(t, pod); err != nil {
		// The last pod that bound only its own ports is the one stopped.
		zero := int64(0)
		l.stop(t, mesos.TaskStatus{State: mesos.TASK_FAILED.Enum(), Message: ptr(err.Error()), Reason: mesos.REASON_TASK_INVALID.Enum()}, &zero)
		return
	}
	t.LastPod = pod
	if pullWaiting(pod) {
		if t.pullSince.IsZero() {
			t.pullSince = time.Now()
		}
	} else {
		t.pullSince = time.Time{}
	}
	v, ok := judge(pod, !t.pullSince.IsZero() && time.Since(t.pullSince) > l.o.ImagePullTimeout)
	if !ok {
		return
	}
	st := mesos.TaskStatus{State: v.state.Enum(), Message: &v.message, Reason: v.reason, ContainerStatus: containerStatus(pod)}
	switch {
	case v.stop:
		l.logger.Info("Pod cannot run, stopping it", "task", t.Info.TaskID.Value, "message", v.message)
		zero := int64(0)
		l.stop(t, st, &zero)
	case v.state == mesos.TASK_RUNNING:
		if t.Sent == nil || *t.Sent != mesos.TASK_RUNNING {
			l.logger.Info("Pod running and ready", "task", t.Info.TaskID.Value, "pod", t.Ref)
			l.send(ctx, t, st)
		}
	case pod.DeletionTimestamp != nil:
		// Stopped because it was deleted, whatever its containers answered.
		st.State, st.Reason = mesos.TASK_KILLED.Enum(), nil
		st.Message = ptr("pod deleted from the API server; " + v.message)
		l.logger.Info("Deleted pod stopped", "task", t.Info.TaskID.Value, "message", st.GetMessage())
		l.send(ctx, t, st)
		t.Phase = phaseDone
		t.Lingering = true
	default:
		// The pod ended (the kubelet stopped every container, or the broker
		// ended it after its task was lost): the task ended. The kubelet
		// keeps the ended pod, so that it stops whatever still runs and
		// never writes an older phase over the terminal one.
		l.logger.Info("Pod ended", "task", t.Info.TaskID.Value, "state", v.state, "message", v.message)
		l.send(ctx, t, st)
		t.Phase = phaseDone
		t.Lingering = true
	}
}

// reconcileLingering hands the pod of an ended task on to the kubelet, as
// the API server has it, until it is gone from there.
func (l *loop) reconcileLingering(t *task) {
	pod, err := l.apiPod(t)
	switch {
	case err == nil && pod.UID == t.Ref.UID:
		if pod.DeletionTimestamp == nil && t.LastPod != nil && t.LastPod.DeletionTimestamp != nil {
			// Stopped by the executor: still deleted for the kubelet, so
			// that it never starts it again.
			pod = pod.DeepCopy()
			pod.DeletionTimestamp, pod.DeletionGracePeriodSeconds = t.LastPod.DeletionTimestamp, t.LastPod.DeletionGracePeriodSeconds
		}
		t.LastPod = pod
	case err == nil || apierrors.IsNotFound(err):
		t.Lingering = false
		l.dirty = true
	}
}

func (l *loop) reconcileStopping(ctx context.Context, t *task) {
	n, err := 0, error(nil)
	if l.o.Runtime != nil {
		n, err = l.o.Runtime.RunningContainers(ctx, t.Ref.UID)
	}
	if err != nil {
		l.logger.Error(err, "Asking the runtime what runs", "pod", t.Ref)
	}
	if (err != nil || n > 0) && time.Now().Before(t.StopBy) {
		return
	}
	end := *t.End
	if n > 0 || err != nil {
		end.Message = ptr(end.GetMessage() + fmt.Sprintf(" (containers still running after the grace period: %d, %v)", n, err))
	}
	l.logger.Info("Pod stopped", "task", t.Info.TaskID.Value, "state", end.GetState(), "message", end.GetMessage())
	l.send(ctx, t, end)
	t.Phase = phaseDone
	t.Lingering = t.LastPod != nil
}

// feedKubelet hands the kubelet every pod it must run now: handed pods as
// the API server has them, stopping pods as deleted with their grace period.
// Nothing else ever reaches it, whatever is bound to the node.
func (l *loop) feedKubelet() {
	var set []*v1.Pod
	for _, t := range l.tasks {
		switch t.Phase {
		case phaseHanded:
			if t.LastPod != nil {
				set = append(set, l.kubeletPod(t, t.LastPod))
			}
		case phaseStopping, phaseDone:
			if t.LastPod == nil || (t.Phase == phaseDone && !t.Lingering) {
				continue
			}
			p := l.kubeletPod(t, t.LastPod)
			if t.Grace != nil && p.DeletionTimestamp != nil && (p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds > *t.Grace) {
				p.DeletionGracePeriodSeconds = ptr(*t.Grace)
			}
			set = append(set, p)
		}
	}
	slices.SortFunc(set, func(a, b *v1.Pod) int {
		if a.UID < b.UID {
			return -1
		}
		if a.UID > b.UID {
			return 1
		}
		return 0
	})
	if l.started && sameSet(set, l.lastSet) {
		return
	}
	// Only the newest set matters: replace one the kubelet did not take yet.
	select {
	case <-l.toKube:
	default:
	}
	l.toKube <- set
	l.started = true
	l.lastSet = set
}

// kubeletPod is the pod as the kubelet must run it: the API server's copy
// with the host ports k8sm chose for its wildcard ports. The scheduler
// records them in an annotation (a pod's ports cannot be updated), so the
// spec the API server has still says hostPort 0.
func (l *loop) kubeletPod(t *task, in *v1.Pod) *v1.Pod {
	p := in.DeepCopy()
	as, err := podresources.PortAssignmentsOf(p)
	if err != nil {
		l.logger.Error(err, "Ignoring the pod's host port assignments", "pod", klog.KObj(p))
		return p
	}
	podresources.ApplyPortAssignments(p, allocatedAssignments(&t.Info, as))
	return p
}

// checkHostPorts refuses a pod that would bind host ports Mesos did not
// allocate to its task (the spec's or the annotation's).
func (l *loop) checkHostPorts(t *task, pod *v1.Pod) error {
	p := pod.DeepCopy()
	as, err := podresources.PortAssignmentsOf(p)
	if err != nil {
		return err
	}
	podresources.ApplyPortAssignments(p, as)
	return checkHostPorts(&t.Info, p)
}

// sameSet says whether the kubelet already has this set.
func sameSet(a, b []*v1.Pod) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].UID != b[i].UID || a[i].ResourceVersion != b[i].ResourceVersion ||
			(a[i].DeletionTimestamp == nil) != (b[i].DeletionTimestamp == nil) ||
			!reflect.DeepEqual(a[i].DeletionGracePeriodSeconds, b[i].DeletionGracePeriodSeconds) {
			return false
		}
	}
	return true
}

// waitSandboxes gives the kubelet until the shutdown deadline to stop the
// sandboxes of the stopped pods, which hold their cgroups and addresses:
// an executor leaves nothing running behind.
func (l *loop) waitSandboxes(ctx context.Context) {
	if l.o.Runtime == nil {
		return
	}
	deadline := time.Now().Add(l.o.StopTimeout)
	if l.shutdownBy.After(deadline) {
		deadline = l.shutdownBy
	}
	for time.Now().Before(deadline) {
		left := 0
		for _, t := range l.tasks {
			if t.Ref.UID == "" {
				continue
			}
			n, err := l.o.Runtime.ReadySandboxes(context.WithoutCancel(ctx), t.Ref.UID)
			if err != nil {
				l.logger.Error(err, "Asking the runtime for sandboxes")
				return
			}
			left += n
		}
		if left == 0 {
			return
		}
		time.Sleep(l.o.Poll)
	}
	l.logger.Info("Pod sandboxes still ready at exit", "deadline", deadline)
}

func (l *loop) allDone() bool {
	for _, t := range l.tasks {
		if t.Phase != phaseDone {
			return false
		}
	}
	return true
}

func ptr[T any](v T) *T { return &v }
