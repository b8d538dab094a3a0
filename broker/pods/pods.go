// Package pods is the broker's Kubernetes side for pods: it watches the pods
// of the mesos-scheduler to tell the framework whether any is pending
// (SUPPRESS/REVIVE), kills the task of a deleted pod, applies task states to
// pods (a task that ended ends its pod, so controllers replace it), kills
// tasks whose pod is gone or bound elsewhere, and lists the tasks the API
// server expects for reconciliation.
//
// Informer handlers do no I/O: client-go calls them one at a time, so a
// KILL made there would queue every other pod's behind it. They note what
// changed and enqueue the pod's UID; Workers drain a rate-limited work queue,
// and a failed KILL is retried with backoff instead of waiting for a resync.
package pods

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/k8sm/k8sm/broker/framework"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/rolepolicy"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Reasons set on pods whose task ended.
const (
	ReasonTaskFinished = "MesosTaskFinished"
	ReasonTaskFailed   = "MesosTaskFailed"
	ReasonTaskKilled   = "MesosTaskKilled"
	ReasonTaskLost     = "MesosTaskLost"
)

// Framework is what the controller drives (framework.Driver).
type Framework interface {
	SetPending(pending bool)
	Revive()
	KillTask(ctx context.Context, taskID, agentID, reason string) error
	// PodTasks are the live tasks of a pod the framework knows of (the
	// attempts it launched or heard of), whether or not the pod was bound.
	PodTasks(uid types.UID) []string
	// ReconcileTasks asks the master for the state of these tasks (task id
	// → agent id); the answers come as statuses.
	ReconcileTasks(ctx context.Context, tasks map[string]string) error
}

// Config of the controller.
type Config struct {
	Client        kubernetes.Interface
	SchedulerName string
	Framework     Framework
	// AgentHostname names the host of an agent id when known.
	AgentHostname func(agentID string) (string, bool)
	// BoundGrace keeps pods bound less than this long out of explicit
	// reconciliation (default 10s): their launch may still be on its way
	// to the master, which would answer TASK_LOST and fail a healthy pod.
	BoundGrace time.Duration
	Resync     time.Duration
	// KubeletRuns reports whether a kubelet runs on the node (renews its
	// Lease). A pod being deleted gracefully on a node without one is ended
	// by the broker: its task killed, then the pod object removed, as the
	// kubelet would. Nil: never (the kubelet is trusted to be there).
	KubeletRuns func(ctx context.Context, nodeName string) (bool, error)
	// Nodes is an informer on Nodes shared with the rest of the broker,
	// started by its owner; nil: the controller starts its own.
	Nodes coreinformers.NodeInformer
	// Workers bounds the KILLs and pod removals in flight (default 5, as
	// kube-controller-manager's --concurrent-*-syncs).
	Workers int
	// PendingDemands is told the distinct demands of the pending pods
	// whenever they change (the offer cache holds offers they could use,
	// offers.Cache.SetPendingDemands). Optional.
	PendingDemands func([]podresources.Demand)
	// RolePolicy resolves a pending pod's roles as Reserve will (default:
	// the built-in policy). A pod the policy refuses has no demand.
	RolePolicy rolepolicy.Source
	// Reconciled reports whether the framework's subscription was
	// reconciled (PodTasks then holds every task the master knows of).
	// The task finalizer of an unbound pod is removed only then. Nil:
	// always.
	Reconciled func() bool
	// LaunchTimeout gives up on a task still TASK_STAGING this long after
	// its pod was bound: it is killed and the pod fails
	// (launchtimeout.go). 0 disables.
	LaunchTimeout time.Duration
	// Clock tells the time of launch deadlines (default: the real clock).
	Clock clock.WithTicker
}

// DefaultWorkers is Config.Workers' default.
const DefaultWorkers = 5

// maxRetries bounds the retries of one pod's work (about 3 minutes of
// backoff): a deleted pod's task is then left to reconciliation, which kills
// any task without a pod; a pod still being deleted comes back with the
// informer's resync.
const maxRetries = 15

// Controller implements framework.StatusSink and framework.TaskSource.
type Controller struct {
	cfg      Config
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	// startNodes starts the node informer (a factory without the pod
	// field selector).
	startNodes func(stop <-chan struct{})

	// queue holds the UIDs of pods with work: a deleted pod's task to kill,
	// or a pod being deleted on a node without a kubelet to end.
	queue workqueue.TypedRateLimitingInterface[types.UID]

	publishMu sync.Mutex
	mu        sync.Mutex
	// pending are the pending pods, each with its demand's key ("" when it
	// has none: the pod is invalid or the role policy refuses it), and
	// demands the distinct demands of them, counted.
	pending    map[types.UID]string
	demands    map[string]*pendingDemand
	lastRevive time.Time
	// gone: pods deleted from the API server whose task is still to be
	// killed. The informer no longer holds them.
	gone map[types.UID]deletedPod
	// ended: the last statuses of attempts that ended, by task id, for
	// endedTTL. A pod is bound as the attempt it launched just after the
	// launch, and a launch failure may come first: the pod ends if it is
	// bound as such an attempt. And a pod that ended with its attempt may
	// be written back to a live phase by a kubelet going down with its
	// agent (its status manager patches from a view older than the
	// broker's write, and Mesos says nothing more of the task): it is
	// ended again.
	ended     map[string]endedTask
	lastPrune time.Time
	// released: pods whose task finalizer the broker removed, every task
	// of them known ended; their deletion kills nothing.
	released map[types.UID]struct{}
	// asked: when the master was last asked the state of a deleted pod's
	// attempt this broker knows nothing of.
	asked map[types.UID]time.Time

	// lt follows launches against LaunchTimeout.
	lt        launchTimeouts
	broadcast record.EventBroadcaster
	recorder  record.EventRecorder
}

// pendingDemand is one distinct demand of pending pods and how many have it.
type pendingDemand struct {
	d podresources.Demand
	n int
}

// endedTask is an attempt that ended.
type endedTask struct {
	st *mesos.TaskStatus
	at time.Time
}

// endedTTL is how long the end of an attempt is kept: the scheduler binds
// within seconds of the launch, and a kubelet that outlives its agent does
// so for seconds; after that reconciliation finds what is left.
const endedTTL = 10 * time.Minute

// deletedPod is what the KILL of a deleted pod's task needs.
type deletedPod struct {
	ref  klog.ObjectRef
	node string // "" if it was not bound
	// task is the attempt it was bound as, "" if it was not bound.
	task string
}

const byUID = "uid"

// New builds the controller; Run starts it.
func New(cfg Config) *Controller {
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Minute
	}
	if cfg.BoundGrace == 0 {
		cfg.BoundGrace = 10 * time.Second
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.RolePolicy == nil {
		cfg.RolePolicy = rolepolicy.Static(rolepolicy.Default())
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.Resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.schedulerName", cfg.SchedulerName).String()
		}))
	pods := factory.Core().V1().Pods().Informer()
	_ = pods.AddIndexers(cache.Indexers{byUID: func(obj any) ([]string, error) {
		return []string{string(obj.(*v1.Pod).UID)}, nil
	}})
	nodes, startNodes := cfg.Nodes, func(<-chan struct{}) {}
	if nodes == nil {
		nodeFactory := informers.NewSharedInformerFactory(cfg.Client, cfg.Resync)
		nodes, startNodes = nodeFactory.Core().V1().Nodes(), nodeFactory.Start
	}
	c := &Controller{cfg: cfg, factory: factory, informer: pods, nodes: nodes.Lister(), pending: map[types.UID]string{}, demands: map[string]*pendingDemand{},
		gone:     map[types.UID]deletedPod{},
		ended:    map[string]endedTask{},
		released: map[types.UID]struct{}{},
		asked:    map[types.UID]time.Time{},
		lt:       newLaunchTimeouts(),
		synced:   []cache.InformerSynced{pods.HasSynced, nodes.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[types.UID](),
			workqueue.TypedRateLimitingQueueConfig[types.UID]{Name: QueueName})}
	_, _ = pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.observe(obj.(*v1.Pod)) },
		UpdateFunc: func(_, obj any) { c.observe(obj.(*v1.Pod)) },
		DeleteFunc: c.deleted,
	})
	c.startNodes = startNodes
	c.broadcast = record.NewBroadcaster()
	c.recorder = c.broadcast.NewRecorder(scheme.Scheme, v1.EventSource{Component: "k8sm-broker"})
	return c
}

// QueueName names the controller's work queue in the workqueue_* metrics.
const QueueName = "k8sm_pods"

// Run starts the informers and Workers workers and blocks until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	defer c.queue.ShutDown()
	c.broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cfg.Client.CoreV1().Events("")})
	defer c.broadcast.Shutdown()
	c.factory.Start(ctx.Done())
	c.startNodes(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	klog.FromContext(ctx).Info("Pod informer synced", "schedulerName", c.cfg.SchedulerName, "workers", c.cfg.Workers)
	c.publishPending(false)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.runLaunchTimeouts(ctx)
	}()
	for range c.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

// next handles one pod from the queue; false once the queue is shut down.
func (c *Controller) next(ctx context.Context) bool {
	uid, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(uid)
	err := c.sync(ctx, uid)
	switch {
	case err == nil:
		c.queue.Forget(uid)
	case ctx.Err() != nil:
		// Shutting down (or no longer leading): the next leader reconciles.
	case c.queue.NumRequeues(uid) < maxRetries:
		klog.FromContext(ctx).Error(err, "Retrying with backoff", "podUID", uid, "retries", c.queue.NumRequeues(uid))
		c.queue.AddRateLimited(uid)
	default:
		klog.FromContext(ctx).Error(err, "Giving up; reconciliation kills any task left without a pod", "podUID", uid, "retries", c.queue.NumRequeues(uid))
		c.queue.Forget(uid)
		c.mu.Lock()
		delete(c.gone, uid)
		c.mu.Unlock()
	}
	return true
}

// sync does a pod's work: kill the task of a deleted pod, or end a pod being
// deleted on a node where no kubelet runs. An error means: retry.
func (c *Controller) sync(ctx context.Context, uid types.UID) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c.mu.Lock()
	d, gone := c.gone[uid]
	c.mu.Unlock()
	if gone {
		if err := c.killDeleted(ctx, uid, d); err != nil {
			return err
		}
		c.mu.Lock()
		delete(c.gone, uid)
		c.mu.Unlock()
		return nil
	}
	p := c.podByUID(uid)
	if p == nil {
		return nil
	}
	if st, ok := c.endedAttempt(p); ok {
		// The end is kept (endedTTL): a late write may make the pod
		// live again.
		if err := c.endPod(ctx, p, st); err != nil {
			return err
		}
	}
	if c.mayNeedEnding(p) {
		if err := c.terminate(ctx, p); err != nil {
			return err
		}
	}
	if heldForTasks(p) {
		return c.release(ctx, p)
	}
	return nil
}

// endedAttempt is the status of the attempt a bound pod, not ended, runs
// as, if that attempt ended.
func (c *Controller) endedAttempt(p *v1.Pod) (*mesos.TaskStatus, bool) {
	if p.Spec.NodeName == "" || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.ended[taskinfo.PodTaskID(p)]
	return e.st, ok
}

// mayNeedEnding: a pod being deleted on a node whose kubelet, if any, would
// end it. Without KubeletRuns, the kubelet is trusted to be there.
func (c *Controller) mayNeedEnding(p *v1.Pod) bool {
	return p.DeletionTimestamp != nil && p.Spec.NodeName != "" && c.cfg.KubeletRuns != nil
}

// PodInformer is the informer on the mesos-scheduler's pods, for other
// controllers of the broker to share (add handlers before Run starts it).
func (c *Controller) PodInformer() cache.SharedIndexInformer { return c.informer }

// HasSynced reports whether the informers are in sync.
func (c *Controller) HasSynced() bool {
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	return true
}

// isPending says whether the pod waits for Mesos resources. A pod with
// scheduling gates does not: the scheduler will not place it until the
// gates are removed, so it must not keep k8sm reviving and holding offers
// that other frameworks could use; removing the last gate makes it pending
// (and REVIVEs).
func isPending(p *v1.Pod) bool {
	return p.Spec.NodeName == "" && p.DeletionTimestamp == nil && len(p.Spec.SchedulingGates) == 0 &&
		p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed
}

// observe notes whether the pod is pending (in memory: SUPPRESS and REVIVE
// must not wait behind KILLs in the queue), with its demand, and queues a pod
// being deleted.
func (c *Controller) observe(p *v1.Pod) {
	if _, ended := c.endedAttempt(p); ended || c.mayNeedEnding(p) || heldForTasks(p) {
		c.queue.Add(p.UID)
	}
	now := isPending(p)
	var d podresources.Demand
	key := ""
	if now {
		d, key = c.demandOf(p)
	}
	c.mu.Lock()
	oldKey, was := c.pending[p.UID]
	demandsChanged := false
	if was && (!now || oldKey != key) {
		demandsChanged = c.dropDemandLocked(oldKey)
	}
	if now {
		if !was || oldKey != key {
			demandsChanged = c.addDemandLocked(key, d) || demandsChanged
		}
		c.pending[p.UID] = key
	} else {
		delete(c.pending, p.UID)
	}
	c.mu.Unlock()
	switch {
	case now && !was:
		c.publishPending(true)
	case was && !now, demandsChanged:
		c.publishPending(false)
	}
}

// demandOf is what the pod asks of an agent, its roles those the role
// policy lets it use, and the demand's key; "" when it has none (the pod is
// invalid or refused: no offer is worth holding for it).
func (c *Controller) demandOf(p *v1.Pod) (podresources.Demand, string) {
	d, err := podresources.FromPod(p)
	if err != nil {
		return d, ""
	}
	if d.Roles, err = c.cfg.RolePolicy.Current().Resolve(p.Namespace, d.Roles); err != nil {
		return d, ""
	}
	return d, d.String()
}

// addDemandLocked counts a pending pod's demand and reports whether it is a
// new one.
func (c *Controller) addDemandLocked(key string, d podresources.Demand) bool {
	if key == "" {
		return false
	}
	if pd := c.demands[key]; pd != nil {
		pd.n++
		return false
	}
	c.demands[key] = &pendingDemand{d: d, n: 1}
	return true
}

// dropDemandLocked uncounts a pod's demand and reports whether no pending
// pod has it any more.
func (c *Controller) dropDemandLocked(key string) bool {
	pd := c.demands[key]
	if pd == nil {
		return false
	}
	if pd.n--; pd.n > 0 {
		return false
	}
	delete(c.demands, key)
	return true
}

// publishPending tells the framework, and the offer cache the pending
// demands; newPod asks for a REVIVE, which also clears the refuse filters of
// offers declined while nothing was pending.
func (c *Controller) publishPending(newPod bool) {
	if !c.HasSynced() {
		return
	}
	// The informer's handlers and Run publish: the last set read is the
	// last one told, or a stale set could stay until the next change.
	c.publishMu.Lock()
	defer c.publishMu.Unlock()
	c.mu.Lock()
	n := len(c.pending)
	revive := newPod && time.Since(c.lastRevive) > time.Second
	if revive {
		c.lastRevive = time.Now()
	}
	var demands []podresources.Demand
	if c.cfg.PendingDemands != nil {
		demands = make([]podresources.Demand, 0, len(c.demands))
		for _, pd := range c.demands {
			demands = append(demands, pd.d)
		}
	}
	c.mu.Unlock()
	if c.cfg.PendingDemands != nil {
		c.cfg.PendingDemands(demands)
	}
	if revive {
		c.cfg.Framework.Revive()
		return
	}
	c.cfg.Framework.SetPending(n > 0)
}

func (c *Controller) deleted(obj any) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	p, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	c.mu.Lock()
	key, was := c.pending[p.UID]
	if was {
		c.dropDemandLocked(key)
	}
	delete(c.pending, p.UID)
	delete(c.asked, p.UID)
	if _, ok := c.released[p.UID]; ok {
		// Every task of it ended before the broker let it go.
		delete(c.released, p.UID)
		c.mu.Unlock()
		if was {
			c.publishPending(false)
		}
		return
	}
	// Any pod may have a task: the broker launches before the scheduler
	// binds, so a pod deleted in between has a running task and no node.
	// Waiting for reconciliation would leave it running for minutes.
	d := deletedPod{ref: klog.KObj(p), node: p.Spec.NodeName}
	if p.Spec.NodeName != "" {
		d.task = taskinfo.PodTaskID(p)
	}
	c.gone[p.UID] = d
	c.mu.Unlock()
	if was {
		c.publishPending(false)
	}
	c.queue.Add(p.UID)
}

// killDeleted kills the tasks of a deleted pod: the attempt it was bound
// as, and every other attempt the framework knows of (an unbound pod's
// agent is left to the framework, which knows where it launched). A pod
// that never had a task costs a KILL that Mesos answers with TASK_LOST,
// which ends nothing (the pod is gone).
func (c *Controller) killDeleted(ctx context.Context, uid types.UID, d deletedPod) error {
	agentID := ""
	if d.node != "" {
		agentID = c.agentOfNode(d.node)
	}
	tasks := c.cfg.Framework.PodTasks(uid)
	if d.task != "" && !slices.Contains(tasks, d.task) {
		tasks = append(tasks, d.task)
	}
	if len(tasks) == 0 {
		tasks = []string{taskinfo.TaskID(uid, "")}
	}
	for _, task := range tasks {
		if err := c.cfg.Framework.KillTask(ctx, task, agentID, "pod-deleted"); err != nil {
			return fmt.Errorf("killing task %s of deleted pod %s: %w", task, d.ref, err)
		}
	}
	return nil
}

// terminate ends a pod being deleted on a node where no kubelet runs: none
// will stop its containers or remove the object, so the pod would stay
// Terminating for ever and its controller would never replace it. The task
// is killed; its terminal status (TaskStatus) removes the pod. A pod that
// already ended is removed at once.
//
// A pod that ended is removed even where a kubelet runs: its task ended,
// and a task ends only once nothing of it runs (the executor stopped the
// containers, or the agent destroyed the executor's container with them),
// while the kubelet there may never have known the pod — a killed
// executor's successor runs only the pods launched to it — and would leave
// it Terminating for ever, its StatefulSet identity never recreated.
func (c *Controller) terminate(ctx context.Context, p *v1.Pod) error {
	logger := klog.FromContext(ctx)
	if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		if finalDelete(p) {
			return nil // removed already; only the task finalizer holds it
		}
		return c.removePod(ctx, p)
	}
	kubelet, err := c.cfg.KubeletRuns(ctx, p.Spec.NodeName)
	if err != nil {
		return fmt.Errorf("deciding who ends pod %s, being deleted on node %s: %w", klog.KObj(p), p.Spec.NodeName, err)
	}
	if kubelet {
		return nil // the kubelet stops it within its grace period and removes it
	}
	logger.Info("Killing the task of a pod being deleted on a node where no kubelet runs", "pod", klog.KObj(p), "node", p.Spec.NodeName)
	if err := c.cfg.Framework.KillTask(ctx, taskinfo.PodTaskID(p), c.agentOfNode(p.Spec.NodeName), "pod-terminating"); err != nil {
		return fmt.Errorf("killing the task of pod %s, being deleted: %w", klog.KObj(p), err)
	}
	return nil
}

// removePod deletes the pod object at once (grace 0), as a kubelet does once
// the pod's containers are stopped. The UID precondition spares a new pod of
// the same name.
func (c *Controller) removePod(ctx context.Context, p *v1.Pod) error {
	zero := int64(0)
	err := c.cfg.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("removing pod %s, whose task ended while it was being deleted: %w", klog.KObj(p), err)
	}
	klog.FromContext(ctx).Info("Removed a deleted pod that had ended", "pod", klog.KObj(p), "node", p.Spec.NodeName)
	return nil
}

func (c *Controller) agentOfNode(name string) string {
	n, err := c.nodes.Get(name)
	if err != nil {
		return ""
	}
	return n.Annotations[taskinfo.AgentIDAnnotation]
}

func (c *Controller) podByUID(uid types.UID) *v1.Pod {
	objs, err := c.informer.GetIndexer().ByIndex(byUID, string(uid))
	if err != nil || len(objs) == 0 {
		return nil
	}
	return objs[0].(*v1.Pod)
}

// KnownTasks implements framework.TaskSource: the bound, unfinished pods.
func (c *Controller) KnownTasks(ctx context.Context) ([]framework.Task, error) {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return nil, fmt.Errorf("listing pods to reconcile: informers did not sync: %w", ctx.Err())
	}
	var out []framework.Task
	for _, obj := range c.informer.GetStore().List() {
		p := obj.(*v1.Pod)
		if p.Spec.NodeName == "" || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		if time.Since(boundAt(p)) < c.cfg.BoundGrace {
			continue
		}
		out = append(out, framework.Task{ID: taskinfo.PodTaskID(p), AgentID: c.agentOfNode(p.Spec.NodeName)})
	}
	return out, nil
}

// TaskStatus implements framework.StatusSink.
func (c *Controller) TaskStatus(ctx context.Context, st *mesos.TaskStatus) error {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return fmt.Errorf("handling status of task %s: informers did not sync", st.TaskID.Value)
	}
	logger := klog.FromContext(ctx)
	taskID, agentID, state := st.TaskID.Value, st.AgentID.GetValue(), st.GetState()
	pod := c.podByUID(taskinfo.PodUID(taskID))
	afterStatusRead()
	live := !taskinfo.Terminal(state)
	if !live {
		c.launchEnded(taskID)
	}
	if pod == nil {
		// The informer may lag a pod created a moment ago, but a task is
		// only launched for a pod the scheduler saw: read the API server
		// before killing anything.
		if live && !c.existsLive(ctx, taskinfo.PodUID(taskID)) {
			logger.Info("Killing a task whose pod does not exist", "task", taskID, "agent", agentID, "state", state)
			return c.cfg.Framework.KillTask(ctx, taskID, agentID, "orphan")
		}
		if !live {
			// An attempt can end before this informer saw its pod, let
			// alone its Binding: the master refuses an ACCEPT's launch at
			// once, once (no uuid, no retry); an agent drops a task sent
			// to an executor that is terminating; the informer lags an API
			// server that restarted. Kept like the end of an unbound
			// attempt, or a pod bound as it would wait for the next
			// periodic reconciliation (--reconcile-interval) without a task.
			c.keepEnd(st)
		}
		return nil
	}
	bound := pod.Spec.NodeName != ""
	current := bound && taskinfo.PodTaskID(pod) == taskID
	if !live && heldForTasks(pod) {
		// The end may be the last one the finalizer waits for (release).
		defer c.queue.Add(pod.UID)
	}
	if live {
		if host, ok := c.hostOf(agentID); ok && bound && pod.Spec.NodeName != host {
			logger.Info("Killing a task whose pod is bound elsewhere", "task", taskID, "pod", klog.KObj(pod), "node", pod.Spec.NodeName, "agentHost", host)
			return c.cfg.Framework.KillTask(ctx, taskID, agentID, "bound-elsewhere")
		}
		if bound && !current {
			logger.Info("Killing an earlier attempt of a pod bound as another", "task", taskID, "pod", klog.KObj(pod), "runsAs", taskinfo.PodTaskID(pod))
			return c.cfg.Framework.KillTask(ctx, taskID, agentID, "superseded")
		}
		c.launchStatus(ctx, pod, st)
		return nil
	}
	if !bound {
		// The pod may yet be bound as this attempt (its launch failed
		// before the Binding) or as another (the scheduler tries again):
		// keep the end for the first case, fail nothing now.
		c.keepEnd(st)
		logger.V(2).Info("Attempt of an unbound pod ended; the pod ends if it is bound as it", "task", taskID, "pod", klog.KObj(pod), "state", state)
		return nil
	}
	if !current {
		logger.V(2).Info("End of an earlier attempt ignored: the pod runs as another", "task", taskID, "pod", klog.KObj(pod), "runsAs", taskinfo.PodTaskID(pod), "state", state)
		return nil
	}
	if err := c.endPod(ctx, pod, st); err != nil {
		return err
	}
	c.rememberEnded(st)
	if c.mayNeedEnding(pod) {
		if kubelet, err := c.cfg.KubeletRuns(ctx, pod.Spec.NodeName); err == nil && !kubelet {
			if err := c.removePod(ctx, pod); err != nil {
				// The informer event of the phase just set queues it again.
				logger.Error(err, "Removing a pod whose task ended")
			}
		}
	}
	return nil
}

// keepEnd keeps the end of an attempt whose pod was not bound as it when
// read, then reads the pod again: a Binding the informer delivered in
// between found no end to apply (observe), and the pod would wait bound and
// task-less for the periodic reconciliation, by when the master, the update
// acknowledged, no longer knows the task.
func (c *Controller) keepEnd(st *mesos.TaskStatus) {
	c.rememberEnded(st)
	if p := c.podByUID(taskinfo.PodUID(st.TaskID.Value)); p != nil {
		if _, ended := c.endedAttempt(p); ended {
			c.queue.Add(p.UID)
		}
	}
}

// afterStatusRead is a test's hook between TaskStatus reading the pod and
// acting on what it read.
var afterStatusRead = func() {}

// rememberEnded keeps the end of an attempt, and forgets those older than
// endedTTL. An informer event of a pod bound as the attempt and not ended
// (the Binding, or a late write of a live phase) queues the pod (observe),
// and sync ends it.
func (c *Controller) rememberEnded(st *mesos.TaskStatus) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Pruned now and then, not on every status: thousands of tasks may
	// end within the TTL.
	if now.Sub(c.lastPrune) > endedTTL/10 {
		c.lastPrune = now
		c.pruneLaunches()
		for id, e := range c.ended {
			if now.Sub(e.at) > endedTTL {
				delete(c.ended, id)
			}
		}
	}
	c.ended[st.TaskID.Value] = endedTask{st: st, at: now}
}

// boundAt is when the pod was bound: the PodScheduled condition the binding
// sets, or its creation for a pod created with a nodeName.
func boundAt(p *v1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time
		}
	}
	return p.CreationTimestamp.Time
}

func (c *Controller) existsLive(ctx context.Context, uid types.UID) bool {
	l, err := c.cfg.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.schedulerName", c.cfg.SchedulerName).String(),
	})
	if err != nil {
		return true // do not kill on doubt
	}
	for i := range l.Items {
		if l.Items[i].UID == uid {
			return true
		}
	}
	return false
}

func (c *Controller) hostOf(agentID string) (string, bool) {
	if agentID == "" || c.cfg.AgentHostname == nil {
		return "", false
	}
	return c.cfg.AgentHostname(agentID)
}

// phaseOf maps a terminal task state to the pod's phase and reason.
func phaseOf(s mesos.TaskState) (v1.PodPhase, string) {
	switch s {
	case mesos.TASK_FINISHED:
		return v1.PodSucceeded, ReasonTaskFinished
	case mesos.TASK_KILLED:
		return v1.PodFailed, ReasonTaskKilled
	case mesos.TASK_LOST, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR, mesos.TASK_DROPPED, mesos.TASK_UNKNOWN:
		return v1.PodFailed, ReasonTaskLost
	}
	return v1.PodFailed, ReasonTaskFailed
}

// endPod sets the phase of a pod whose task ended, so that its controller
// replaces it. A pod that already ended is left as the kubelet wrote it.
func (c *Controller) endPod(ctx context.Context, pod *v1.Pod, st *mesos.TaskStatus) error {
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		return nil
	}
	phase, reason := phaseOf(st.GetState())
	msg := fmt.Sprintf("Mesos task %s is %s", st.TaskID.Value, st.GetState())
	if m := st.GetMessage(); m != "" {
		msg += ": " + m
	}
	if r := st.Reason; r != nil {
		msg += " (" + r.String() + ")"
	}
	if m, ok := c.launchTimedOut(pod, st); ok {
		reason, msg = ReasonTaskLaunchTimeout, m
	}
	p := pod.DeepCopy()
	p.Status.Phase = phase
	p.Status.Reason = reason
	p.Status.Message = msg
	setCondition(p, v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionFalse, Reason: reason, Message: msg, LastTransitionTime: statusTime(st)})
	_, err := c.cfg.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if apierrors.IsConflict(err) {
		// Re-read and try once more; otherwise Mesos resends the update.
		fresh, gerr := c.cfg.Client.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("re-reading pod %s/%s: %w", p.Namespace, p.Name, gerr)
		}
		if fresh.UID != pod.UID {
			return nil
		}
		return c.endPod(ctx, fresh, st)
	}
	if err != nil {
		return fmt.Errorf("setting pod %s/%s %s after task %s: %w", p.Namespace, p.Name, phase, st.GetState(), err)
	}
	klog.FromContext(ctx).Info("Pod ended with its Mesos task", "pod", klog.KObj(p), "phase", phase, "reason", reason, "state", st.GetState())
	return nil
}

// statusTime is when the task reached its state: the status's timestamp
// (the agent's or executor's clock), not when the broker handled it, which
// after a broker failover or a resend can be long after. A status without
// one, or one from the future, is taken as now.
func statusTime(st *mesos.TaskStatus) metav1.Time {
	now := metav1.Now()
	ts := st.GetTimestamp()
	if ts <= 0 {
		return now
	}
	sec, frac := math.Modf(ts)
	t := time.Unix(int64(sec), int64(frac*1e9))
	if t.After(now.Time) {
		return now
	}
	return metav1.NewTime(t)
}

func setCondition(p *v1.Pod, cond v1.PodCondition) {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == cond.Type {
			p.Status.Conditions[i] = cond
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, cond)
}
