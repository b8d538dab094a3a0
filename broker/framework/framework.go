// Package framework is the broker's Mesos scheduler logic: it turns the
// events of a subscription into offer-cache changes, task status changes and
// agent changes, declines offers nobody needs, suppresses offers while no
// pod is pending (through its Driver), reconciles tasks after every
// subscription, and launches and kills tasks for the gRPC server (it is its
// Launcher).
package framework

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/apierrors"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/broker/launch"
	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	"github.com/k8sm/k8sm/broker/metrics"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/failpoint"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// ExecutorBuilder makes the ExecutorInfo shared by the pod tasks on an agent
// (pkg/taskinfo's contract with the executor).
type ExecutorBuilder interface {
	// NewExecutorInfo returns the executor of role's tasks, resources
	// included. It must be a pure function of its arguments and the broker's
	// configuration: Mesos refuses a task whose ExecutorInfo differs from the
	// running executor's, and that executor may have been started by another
	// broker process. offers.Take cuts exactly its resources from the offers
	// (podresources.TakeUnreserved).
	NewExecutorInfo(fw mesos.FrameworkID, role string) *mesos.ExecutorInfo
}

// Task is a task the API server says should exist: a bound pod.
type Task struct {
	ID      string
	AgentID string // may be empty when the Node does not name it
}

// TaskSource lists the tasks to reconcile explicitly.
type TaskSource interface {
	KnownTasks(ctx context.Context) ([]Task, error)
}

// StatusSink applies task states to pods. An error leaves the update
// unacknowledged, so that Mesos sends it again.
type StatusSink interface {
	TaskStatus(ctx context.Context, st *mesos.TaskStatus) error
}

// AgentSink mirrors agents (as Nodes).
type AgentSink interface {
	AgentOffered(ctx context.Context, o *mesos.Offer)
	// AgentLost: Mesos lost or removed the agent.
	AgentLost(ctx context.Context, agentID string)
	// AgentGone: the agent will never come back (an operator marked it
	// gone).
	AgentGone(ctx context.Context, agentID string)
	// ExecutorEnded: the k8sm executor (and its kubelet) on the agent ended.
	ExecutorEnded(ctx context.Context, agentID string)
}

// Config of a Framework.
type Config struct {
	Cache  *offers.Cache
	Caller brokermesos.Caller
	// Driver (required) makes the calls the pod controller drives
	// (SUPPRESS/REVIVE, KILL); the Framework tells it about subscriptions
	// and where tasks run. Its owner runs it (Driver.Run).
	Driver *Driver
	// FrameworkID returns the current framework id (the client's).
	FrameworkID func() string
	Builder     ExecutorBuilder
	// Roles the framework subscribes with (the Driver's).
	Roles []string
	// Executor is what the executor itself needs (as the cache charges it).
	Executor podresources.Resources
	// RefuseSeconds filters declined offers, and the remainder of accepted
	// ones while no pod is pending.
	RefuseSeconds float64
	// DeclineInterval is how often expired reservations and unused offers
	// are swept (default 1s).
	DeclineInterval time.Duration
	// ReconcileInterval repeats reconciliation while subscribed (default
	// 5m): a pod bound while the broker runs but never launched is only
	// found by asking Mesos about it again.
	ReconcileInterval time.Duration
	// Serving is told when the broker may take reservations: once the
	// reconciliation after a subscription was answered (the live tasks of
	// every earlier broker process are known, so a launch goes nowhere
	// beside one), and no longer once the subscription ended. Optional.
	Serving func(serving bool)
	// ReconciledWithin bounds that wait (default 10s): a master that does
	// not answer (one just elected, whose agents have not re-registered,
	// answers nothing for their tasks) delays the broker only so long.
	ReconciledWithin time.Duration
	// UnreachableReconcileInterval asks the master about the tasks it
	// reported TASK_UNREACHABLE this often while there are any (default
	// 15s). A healed agent that runs no other k8sm task is announced by no
	// status, and offers nothing while the broker suppresses: only
	// reconciliation tells that a launch it never received is gone.
	UnreachableReconcileInterval time.Duration
	Tasks                        TaskSource
	Status                       StatusSink
	Agents                       AgentSink
}

// Framework handles a subscription's events; it implements
// brokermesos.Handler and launch.Mesos.
type Framework struct {
	cfg Config

	mu sync.Mutex
	// offerIDs are the offers handed to the cache, so that a lost
	// subscription can void them all.
	offerIDs map[string]struct{}
	// execs memoizes the ExecutorInfo by framework id and role.
	execs map[string]*mesos.ExecutorInfo
	// agentExecs are the k8sm executors known to run on each agent (from
	// task updates), with their live tasks: by agent, executor id, task id.
	agentExecs map[string]map[string]map[string]bool
	// partitioned are the tasks reported TASK_UNREACHABLE (partition.go).
	partitioned unreachable
	// settling are the tasks Settle waits to hear about.
	settling map[string]chan *mesos.TaskStatus
	// sub counts subscriptions; the reconciliation of one that ended
	// serves nothing. barrier is the task id whose answer ends the current
	// subscription's first reconciliation, closing reconciled.
	sub        uint64
	barrier    string
	reconciled chan struct{}
}

// New returns a Framework.
func New(cfg Config) *Framework {
	if cfg.DeclineInterval <= 0 {
		cfg.DeclineInterval = time.Second
	}
	if cfg.RefuseSeconds <= 0 {
		cfg.RefuseSeconds = 5
	}
	if cfg.ReconcileInterval <= 0 {
		cfg.ReconcileInterval = 5 * time.Minute
	}
	if cfg.UnreachableReconcileInterval <= 0 {
		cfg.UnreachableReconcileInterval = 15 * time.Second
	}
	if cfg.ReconciledWithin <= 0 {
		cfg.ReconciledWithin = 10 * time.Second
	}
	if len(cfg.Roles) == 0 {
		cfg.Roles = []string{podresources.DefaultRole}
	}
	return &Framework{
		cfg:        cfg,
		offerIDs:   map[string]struct{}{},
		execs:      map[string]*mesos.ExecutorInfo{},
		agentExecs: map[string]map[string]map[string]bool{},
		settling:   map[string]chan *mesos.TaskStatus{},
	}
}

// Run sweeps reservations and declines unused offers, and reconciles every
// ReconcileInterval while subscribed, until ctx ends. The Driver runs on its
// own (Driver.Run).
func (f *Framework) Run(ctx context.Context) {
	go f.cfg.Cache.Run(ctx, f.cfg.DeclineInterval, f.decline)
	rt := time.NewTicker(f.cfg.ReconcileInterval)
	defer rt.Stop()
	ut := time.NewTicker(f.cfg.UnreachableReconcileInterval)
	defer ut.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rt.C:
			if f.cfg.Driver.isSubscribed() {
				f.reconcile(ctx)
			}
		case <-ut.C:
			if f.cfg.Driver.isSubscribed() {
				f.reconcileUnreachable(ctx)
			}
		}
	}
}

func (f *Framework) decline(ctx context.Context, d offers.Decline) {
	metrics.OffersHeldForPending.Set(float64(d.Held))
	if len(d.OfferIDs) == 0 {
		return
	}
	ids := make([]mesos.OfferID, len(d.OfferIDs))
	f.mu.Lock()
	for i, id := range d.OfferIDs {
		ids[i] = mesos.OfferID{Value: id}
		delete(f.offerIDs, id)
	}
	metrics.OffersHeld.Set(float64(len(f.offerIDs)))
	f.mu.Unlock()
	call := calls.Decline(ids...).With(calls.RefuseSeconds(time.Duration(d.RefuseSeconds * float64(time.Second))))
	if err := f.cfg.Caller.Call(ctx, call); err != nil {
		// The offers are gone from the cache either way; Mesos rescinds
		// them in time (or they died with the subscription).
		klog.FromContext(ctx).Error(err, "Declining offers", "offers", len(ids))
		return
	}
	metrics.OffersDeclined.Add(float64(len(ids)))
}

// NewOfferBatch implements brokermesos.OffersHandler: the offers of an
// OFFERS event go into the cache as compact records as they are decoded,
// and the event is handled once it was read whole.
func (f *Framework) NewOfferBatch() brokermesos.OfferBatch {
	return &offerBatch{f: f, cache: f.cfg.Cache.NewBatch()}
}

var _ brokermesos.OffersHandler = (*Framework)(nil)

// offerBatch is an OFFERS event on its way in: what the cache keeps of its
// offers, and what the framework and the agent mirror read of them.
type offerBatch struct {
	f       *Framework
	cache   *offers.Batch
	offered []offered
}

// offered is what is read of an offer besides the cache's record.
type offered struct {
	id, agentID, hostname string
	attributes            []mesos.Attribute
}

// Offer implements brokermesos.OfferBatch.
func (b *offerBatch) Offer(o *mesos.Offer) {
	b.cache.Put(o)
	b.offered = append(b.offered, offered{id: o.ID.Value, agentID: o.AgentID.Value, hostname: o.Hostname, attributes: o.Attributes})
}

// Commit implements brokermesos.OfferBatch.
func (b *offerBatch) Commit(ctx context.Context, _ *scheduler.Event) {
	f, os := b.f, b.offered
	f.mu.Lock()
	for i := range os {
		f.offerIDs[os[i].id] = struct{}{}
	}
	metrics.OffersHeld.Set(float64(len(f.offerIDs)))
	f.mu.Unlock()
	metrics.OffersReceived.Add(float64(len(os)))
	f.cfg.Cache.AddBatch(b.cache)
	for i := range os {
		f.agentBack(ctx, os[i].agentID, os[i].hostname)
	}
	if f.cfg.Agents != nil {
		for i := range os {
			// The mirror reads the agent, its host and attributes.
			f.cfg.Agents.AgentOffered(ctx, &mesos.Offer{ID: mesos.OfferID{Value: os[i].id}, AgentID: mesos.AgentID{Value: os[i].agentID}, Hostname: os[i].hostname, Attributes: os[i].attributes})
		}
	}
}

// HandleEvent implements brokermesos.Handler.
func (f *Framework) HandleEvent(ctx context.Context, ev *scheduler.Event) error {
	logger := klog.FromContext(ctx)
	switch ev.Type {
	case scheduler.Event_SUBSCRIBED:
		f.cfg.Driver.setSubscribed(true)
		go f.reconcileSubscription(ctx, f.newSubscription())
	case scheduler.Event_OFFERS:
		b := f.NewOfferBatch()
		os := ev.GetOffers().Offers
		for i := range os {
			b.Offer(&os[i])
		}
		b.Commit(ctx, ev)
	case scheduler.Event_RESCIND:
		id := ev.GetRescind().OfferID.Value
		f.mu.Lock()
		delete(f.offerIDs, id)
		metrics.OffersHeld.Set(float64(len(f.offerIDs)))
		f.mu.Unlock()
		metrics.OffersRescinded.Inc()
		for _, r := range f.cfg.Cache.Rescind(id) {
			metrics.Reservations.WithLabelValues("lost").Inc()
			logger.Info("Reservation lost: its offer was rescinded", "reservation", r.ID, "pod", klog.KRef(r.Pod.Namespace, r.Pod.Name), "offer", id)
		}
	case scheduler.Event_FAILURE:
		fl := ev.GetFailure()
		agentID := fl.AgentID.GetValue()
		if agentID == "" {
			break
		}
		if fl.ExecutorID != nil {
			logger.Info("Executor ended", "agent", agentID, "executor", fl.ExecutorID.Value, "status", fl.GetStatus())
			if f.executorEnded(agentID, fl.ExecutorID.Value) {
				// An executor of an earlier configuration ended: the
				// current one (if any) runs on; the agent takes pods again.
				break
			}
			for _, role := range f.cfg.Roles {
				f.cfg.Cache.SetExecutorRunning(agentID, role, false)
			}
			if f.cfg.Agents != nil {
				f.cfg.Agents.ExecutorEnded(ctx, agentID)
			}
			break
		}
		logger.Info("Agent lost", "agent", agentID)
		for _, r := range f.cfg.Cache.RemoveAgent(agentID) {
			metrics.Reservations.WithLabelValues("lost").Inc()
			logger.Info("Reservation lost with its agent", "reservation", r.ID, "pod", klog.KRef(r.Pod.Namespace, r.Pod.Name))
		}
		f.mu.Lock()
		delete(f.agentExecs, agentID)
		f.mu.Unlock()
		if f.cfg.Agents != nil {
			f.cfg.Agents.AgentLost(ctx, agentID)
		}
	case scheduler.Event_UPDATE:
		st := ev.GetUpdate().GetStatus()
		return f.update(ctx, &st)
	case scheduler.Event_MESSAGE:
		logger.V(4).Info("Executor message", "agent", ev.GetMessage().AgentID.Value, "bytes", len(ev.GetMessage().Data))
	case scheduler.Event_INVERSE_OFFERS:
		// Maintenance windows are not honoured yet: declining says so.
		var ids []mesos.OfferID
		for _, o := range ev.GetInverseOffers().InverseOffers {
			ids = append(ids, o.OfferID)
		}
		if len(ids) > 0 {
			if err := f.cfg.Caller.Call(ctx, calls.DeclineInverseOffers(ids...)); err != nil {
				logger.Error(err, "Declining inverse offers")
			}
		}
	}
	return nil
}

func (f *Framework) update(ctx context.Context, st *mesos.TaskStatus) error {
	state := st.GetState()
	metrics.Updates.WithLabelValues(state.String()).Inc()
	taskID := st.TaskID.Value
	agentID := st.AgentID.GetValue()
	// Reason is optional and its zero value is REASON_COMMAND_EXECUTOR_FAILED:
	// GetReason would name that failure on every plain TASK_RUNNING.
	reason := ""
	if st.Reason != nil {
		reason = st.Reason.String()
	}
	if isBarrier(taskID) {
		return nil // ObserveStatus heard it
	}
	klog.FromContext(ctx).V(2).Info("Task status", "task", taskID, "state", state, "agent", agentID, "reason", reason, "message", st.GetMessage(), "source", st.GetSource())
	f.partitioned.observe(agentID, taskID, state)
	if st.Reason != nil && *st.Reason == mesos.REASON_AGENT_REREGISTERED && agentID != "" {
		// The master announces a task of an unreachable agent that
		// re-registered: the agent is back, even if it offers nothing.
		f.agentBack(ctx, agentID, "")
	}
	if agentGone(st) && f.cfg.Agents != nil {
		f.cfg.Agents.AgentGone(ctx, agentID)
	}
	f.mu.Lock()
	if ch := f.settling[taskID]; ch != nil {
		select {
		case ch <- st:
		default: // Settle heard of the task already
		}
	}
	f.mu.Unlock()
	if agentID != "" && st.ExecutorID != nil && taskinfo.IsExecutorID(st.ExecutorID.Value) {
		f.trackExecutor(ctx, agentID, st.ExecutorID.Value, taskID, state)
	}
	if f.cfg.Status == nil {
		return nil
	}
	return f.cfg.Status.TaskStatus(ctx, st)
}

// ObserveStatus implements brokermesos.StatusObserver: where tasks run is
// kept in the stream's order, so that once the answer to the barrier of a
// reconciliation is seen, every task the master told of before it is known
// to Launch (PodTasks).
func (f *Framework) ObserveStatus(_ context.Context, st *mesos.TaskStatus) {
	taskID, agentID := st.TaskID.Value, st.AgentID.GetValue()
	if isBarrier(taskID) {
		f.mu.Lock()
		if taskID == f.barrier && f.reconciled != nil {
			close(f.reconciled)
			f.reconciled = nil
		}
		f.mu.Unlock()
		return
	}
	if taskinfo.Terminal(st.GetState()) {
		f.cfg.Driver.taskEnded(taskID)
	} else if agentID != "" {
		f.cfg.Driver.taskAt(taskID, agentID)
	}
}

// barrierPrefix names the task ids no task has, which end a subscription's
// first reconciliation (reconcileSubscription).
const barrierPrefix = "k8sm-reconciled."

func isBarrier(taskID string) bool { return strings.HasPrefix(taskID, barrierPrefix) }

// newSubscription starts a subscription's count and its barrier.
func (f *Framework) newSubscription() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sub++
	f.barrier = fmt.Sprintf("%s%d.%d", barrierPrefix, time.Now().UnixNano(), f.sub)
	f.reconciled = make(chan struct{})
	return f.sub
}

// reconcileSubscription reconciles after subscription sub and serves once
// the master answered. A restarted broker knows of the tasks an earlier
// process launched (one whose pod is not bound yet: the process died after
// the master took its ACCEPT) only from the answers to its implicit
// reconciliation; a Launch before them would start a second task of the
// pod. The master answers a RECONCILE before it handles the next call, on
// the one event stream: so an explicit reconciliation sent after the
// implicit one, carrying a task id no task has (the barrier, answered
// TASK_UNKNOWN or TASK_LOST), is answered after every answer of the
// implicit one. ObserveStatus sees them in that order.
func (f *Framework) reconcileSubscription(ctx context.Context, sub uint64) {
	logger := klog.FromContext(ctx)
	f.mu.Lock()
	barrier, reconciled := f.barrier, f.reconciled
	f.mu.Unlock()
	start := time.Now()
	deadline := time.NewTimer(f.cfg.ReconciledWithin)
	defer deadline.Stop()
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return
			case <-deadline.C:
				logger.Info("The master did not answer the reconciliation after subscribing: serving anyway; a task an earlier broker process launched may be unknown yet", "within", f.cfg.ReconciledWithin)
				f.serve(sub)
				return
			case <-time.After(time.Second):
			}
		}
		if !f.current(sub) {
			return
		}
		err := f.cfg.Caller.Call(ctx, calls.Reconcile())
		if err == nil {
			metrics.ReconcileRuns.WithLabelValues("implicit", "success").Inc()
			err = f.cfg.Caller.Call(ctx, calls.Reconcile(calls.ReconcileTasks(map[string]string{barrier: ""})))
		} else {
			metrics.ReconcileRuns.WithLabelValues("implicit", "error").Inc()
		}
		if err != nil {
			logger.Error(err, "Reconciling after subscribing; trying again")
			continue
		}
		break
	}
	// The tasks the API server expects, for the pods: their answers need
	// not come before serving (a bound pod's task is answered by the
	// implicit reconciliation too, if the master has it), and listing them
	// waits for the pod informer.
	go func() {
		if err := f.reconcileKnown(ctx); err != nil {
			logger.Error(err, "Explicit reconciliation after subscribing")
		}
	}()
	select {
	case <-ctx.Done():
		return
	case <-reconciled:
		logger.Info("Reconciled after subscribing: serving", "took", time.Since(start))
	case <-deadline.C:
		logger.Info("The master did not answer the reconciliation after subscribing: serving anyway; a task an earlier broker process launched may be unknown yet", "within", f.cfg.ReconciledWithin)
	}
	f.serve(sub)
}

// reconcileKnown reconciles explicitly every task the API server expects.
func (f *Framework) reconcileKnown(ctx context.Context) error {
	if f.cfg.Tasks == nil {
		return nil
	}
	tasks, err := f.cfg.Tasks.KnownTasks(ctx)
	if err != nil {
		metrics.ReconcileRuns.WithLabelValues("explicit", "error").Inc()
		return fmt.Errorf("listing the tasks to reconcile: %w", err)
	}
	if len(tasks) == 0 {
		return nil
	}
	m := make(map[string]string, len(tasks))
	for _, t := range tasks {
		m[t.ID] = t.AgentID
	}
	if err := f.cfg.Caller.Call(ctx, calls.Reconcile(calls.ReconcileTasks(m))); err != nil {
		metrics.ReconcileRuns.WithLabelValues("explicit", "error").Inc()
		return fmt.Errorf("explicit reconciliation of %d tasks: %w", len(m), err)
	}
	metrics.ReconcileRuns.WithLabelValues("explicit", "success").Inc()
	klog.FromContext(ctx).Info("Explicit reconciliation sent", "tasks", len(m))
	return nil
}

// current reports whether sub is the subscription in force.
func (f *Framework) current(sub uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sub == sub && f.cfg.Driver.isSubscribed()
}

// serve tells Serving that subscription sub, if still in force, serves.
func (f *Framework) serve(sub uint64) {
	if f.cfg.Serving != nil && f.current(sub) {
		f.cfg.Serving(true)
	}
}

// Disconnected implements brokermesos.Handler: the offers of the old
// subscription are void, so are the reservations on them.
func (f *Framework) Disconnected(ctx context.Context) {
	if f.cfg.Serving != nil {
		f.cfg.Serving(false)
	}
	f.mu.Lock()
	f.sub++ // its reconciliation serves nothing
	f.reconciled = nil
	ids := make([]string, 0, len(f.offerIDs))
	for id := range f.offerIDs {
		ids = append(ids, id)
	}
	f.offerIDs = map[string]struct{}{}
	f.mu.Unlock()
	f.cfg.Driver.setSubscribed(false)
	metrics.OffersHeld.Set(0)
	for _, id := range ids {
		for _, r := range f.cfg.Cache.Rescind(id) {
			metrics.Reservations.WithLabelValues("lost").Inc()
			klog.FromContext(ctx).V(2).Info("Reservation lost with the Mesos subscription", "reservation", r.ID, "pod", klog.KRef(r.Pod.Namespace, r.Pod.Name))
		}
	}
}

// reconcile asks Mesos about every task the API server expects (explicit),
// then about every task Mesos knows (implicit), every ReconcileInterval
// (after a subscription: reconcileSubscription). The answers are ordinary
// UPDATEs: the StatusSink fails pods whose tasks are gone and kills tasks
// whose pods are.
func (f *Framework) reconcile(ctx context.Context) {
	logger := klog.FromContext(ctx)
	if err := f.reconcileKnown(ctx); err != nil {
		logger.Error(err, "Explicit reconciliation")
	}
	if err := f.cfg.Caller.Call(ctx, calls.Reconcile()); err != nil {
		metrics.ReconcileRuns.WithLabelValues("implicit", "error").Inc()
		logger.Error(err, "Implicit reconciliation")
		return
	}
	metrics.ReconcileRuns.WithLabelValues("implicit", "success").Inc()
}

// Launch implements launch.Mesos: one ACCEPT of the launch's offers with one
// LAUNCH operation holding every task, each carrying its pod as it came.
func (f *Framework) Launch(ctx context.Context, l *offers.Launch, pods map[string]taskinfo.PodData) error {
	fwID := f.cfg.FrameworkID()
	if fwID == "" {
		return fmt.Errorf("launching on %s: %w", l.Hostname, brokermesos.ErrNotSubscribed)
	}
	agent := mesos.AgentID{Value: l.AgentID}
	tasks := make([]mesos.TaskInfo, 0, len(l.Tasks))
	for _, t := range l.Tasks {
		p, ok := pods[t.ID]
		if !ok {
			return fmt.Errorf("launching reservation %s: no pod", t.ID)
		}
		ti, err := taskinfo.NewTask(p, agent, t.Resources, f.executorFor(fwID, l, t.Role))
		if err != nil {
			return fmt.Errorf("launching reservation %s: %w", t.ID, err)
		}
		tasks = append(tasks, ti)
	}
	offerIDs := make([]mesos.OfferID, len(l.OfferIDs))
	for i, id := range l.OfferIDs {
		offerIDs[i] = mesos.OfferID{Value: id}
	}
	refuse := time.Duration(f.cfg.RefuseSeconds * float64(time.Second))
	if f.cfg.Driver.Pending() || len(l.Lost) > 0 {
		// Pods wait (or the remainder held reservations whose pods are
		// retried): the agent's leftovers must come back in the next
		// allocation, not after the filter. Under the filter every agent
		// drops out of the offers for seconds after each launch, and a
		// burst of pods needs one such wave per pod an agent takes.
		refuse = 0
	}
	call := calls.Accept(calls.OfferOperations{calls.OpLaunch(tasks...)}.WithOffers(offerIDs...)).
		With(calls.RefuseSeconds(refuse))
	f.mu.Lock()
	for _, id := range l.OfferIDs {
		delete(f.offerIDs, id)
	}
	metrics.OffersHeld.Set(float64(len(f.offerIDs)))
	f.mu.Unlock()
	start := time.Now()
	err := f.cfg.Caller.Call(ctx, call)
	failpoint.Hit(failpoint.BrokerAccepted)
	metrics.LaunchLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		metrics.Launches.WithLabelValues("error").Add(float64(len(tasks)))
		if !answered(err) {
			return fmt.Errorf("ACCEPT of %d offers with %d tasks: %w: %w", len(offerIDs), len(tasks), launch.ErrUnknownOutcome, err)
		}
		return fmt.Errorf("ACCEPT of %d offers with %d tasks: %w", len(offerIDs), len(tasks), err)
	}
	metrics.Launches.WithLabelValues("success").Add(float64(len(tasks)))
	for _, t := range tasks {
		f.cfg.Driver.taskAt(t.TaskID.Value, l.AgentID)
	}
	return nil
}

// answered reports whether a failed call is known not to have been taken:
// the master answered with an error status, or the call was never sent. Any
// other failure (a timeout, a broken connection) may come after the master
// took it.
func answered(err error) bool {
	var apiErr *apierrors.Error
	return errors.As(err, &apiErr) || errors.Is(err, brokermesos.ErrNotSubscribed)
}

// Settle implements launch.Mesos: it reconciles taskIDs explicitly (once
// subscribed) and waits, until ctx ends, for the master's answer about each. A task the
// master does not have comes back TASK_UNKNOWN (TASK_LOST without
// PARTITION_AWARE); one it dropped at once, TASK_DROPPED or TASK_GONE: none
// of these runs.
func (f *Framework) Settle(ctx context.Context, agentID string, taskIDs []string) (map[string]bool, error) {
	ch := make(chan *mesos.TaskStatus, len(taskIDs))
	f.mu.Lock()
	for _, id := range taskIDs {
		f.settling[id] = ch
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		for _, id := range taskIDs {
			if f.settling[id] == ch {
				delete(f.settling, id)
			}
		}
		f.mu.Unlock()
	}()
	m := make(map[string]string, len(taskIDs))
	for _, id := range taskIDs {
		m[id] = agentID
	}
	// mesos-go's caller takes a call that got no answer for a lost master
	// and subscribes again: the reconciliation waits for the subscription
	// (whose own reconciliation answers too).
	for {
		err := f.cfg.Caller.Call(ctx, calls.Reconcile(calls.ReconcileTasks(m)))
		if err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reconciling tasks %v: %w", taskIDs, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	known := make(map[string]bool, len(taskIDs))
	for len(known) < len(taskIDs) {
		select {
		case st := <-ch:
			switch st.GetState() {
			case mesos.TASK_UNKNOWN, mesos.TASK_LOST, mesos.TASK_DROPPED, mesos.TASK_GONE, mesos.TASK_GONE_BY_OPERATOR:
				known[st.TaskID.Value] = false
			default:
				known[st.TaskID.Value] = true
			}
		case <-ctx.Done():
			return known, nil
		}
	}
	return known, nil
}

// executorFor returns the ExecutorInfo of role's tasks. It is the same
// whether or not this launch starts the executor, and whichever broker
// process asks: Take cut exactly its resources when it starts it.
func (f *Framework) executorFor(fwID string, l *offers.Launch, role string) *mesos.ExecutorInfo {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.executorLocked(fwID, role)
}

func (f *Framework) executorLocked(fwID, role string) *mesos.ExecutorInfo {
	key := fwID + "\x00" + role
	ei, ok := f.execs[key]
	if !ok {
		ei = f.cfg.Builder.NewExecutorInfo(mesos.FrameworkID{Value: fwID}, role)
		f.execs[key] = ei
	}
	return ei
}

// currentExecutorLocked reports whether id is the executor this broker's
// configuration launches (for any role).
func (f *Framework) currentExecutorLocked(id string) bool {
	fwID := f.cfg.FrameworkID()
	for _, role := range f.cfg.Roles {
		if f.executorLocked(fwID, role).ExecutorID.Value == id {
			return true
		}
	}
	return false
}

// trackExecutor follows which k8sm executors run on an agent, from the
// updates of their tasks. The current executor's resources are not charged
// again (after a broker restart this is how the cache learns it runs). An
// executor of an earlier configuration (the operator changed the executor's
// flags, or upgraded it) gets no new pods and neither does its agent: two
// executors would be two kubelets for one Node, each killing the other's
// pods. Once its last task ended the broker shuts it down, and the agent
// takes pods again, with the current executor.
func (f *Framework) trackExecutor(ctx context.Context, agentID, execID, taskID string, state mesos.TaskState) {
	live := !taskinfo.Terminal(state)
	f.mu.Lock()
	current := f.currentExecutorLocked(execID)
	execs := f.agentExecs[agentID]
	if execs == nil {
		execs = map[string]map[string]bool{}
		f.agentExecs[agentID] = execs
	}
	tasks := execs[execID]
	if tasks == nil {
		if !live {
			f.mu.Unlock()
			return
		}
		tasks = map[string]bool{}
		execs[execID] = tasks
	}
	if live {
		tasks[taskID] = true
	} else {
		delete(tasks, taskID)
	}
	idle := !current && len(tasks) == 0
	f.mu.Unlock()

	if current {
		if live {
			for _, role := range f.cfg.Roles {
				f.cfg.Cache.SetExecutorRunning(agentID, role, true)
			}
		}
		return
	}
	if live {
		if f.cfg.Cache.SetDraining(agentID, "the agent runs k8sm executor "+execID+" of an earlier configuration; it is shut down once its pods are gone") {
			klog.FromContext(ctx).Info("Agent runs an executor of an earlier configuration: no new pods there until its pods are gone", "agent", agentID, "executor", execID)
		}
		return
	}
	if idle {
		klog.FromContext(ctx).Info("Shutting down an executor of an earlier configuration: its last task ended", "agent", agentID, "executor", execID)
		if err := f.cfg.Caller.Call(ctx, calls.Shutdown(execID, agentID)); err != nil {
			klog.FromContext(ctx).Error(err, "Shutting down an executor of an earlier configuration", "agent", agentID, "executor", execID)
		}
	}
}

// executorEnded forgets an executor and reports whether it was one of an
// earlier configuration.
func (f *Framework) executorEnded(agentID, execID string) (stale bool) {
	f.mu.Lock()
	stale = taskinfo.IsExecutorID(execID) && !f.currentExecutorLocked(execID)
	delete(f.agentExecs[agentID], execID)
	others := false
	for id := range f.agentExecs[agentID] {
		if !f.currentExecutorLocked(id) {
			others = true
		}
	}
	f.mu.Unlock()
	if stale && !others {
		f.cfg.Cache.SetDraining(agentID, "")
	}
	return stale
}

// PodTasks implements launch.Mesos.
func (f *Framework) PodTasks(uid types.UID) []string { return f.cfg.Driver.PodTasks(uid) }

// TaskAgent implements launch.Mesos.
func (f *Framework) TaskAgent(taskID string) string { return f.cfg.Driver.taskAgent(taskID) }

// Kill implements launch.Mesos.
func (f *Framework) Kill(ctx context.Context, taskID, agentID string) error {
	return f.cfg.Driver.KillTask(ctx, taskID, agentID, "requested")
}

// agentGone reports whether st says its agent is gone for good. A
// scheduler hears of MARK_AGENT_GONE only through the agent's tasks: each
// ends TASK_GONE_BY_OPERATOR with REASON_AGENT_REMOVED_BY_OPERATOR, while
// the FAILURE event that follows is the one an unreachable agent gets too
// (Mesos 1.11 master.cpp markGone → __removeSlave). A gone agent that runs
// no k8sm task is not told apart from an unreachable one.
func agentGone(st *mesos.TaskStatus) bool {
	return st.GetState() == mesos.TASK_GONE_BY_OPERATOR && st.Reason != nil &&
		*st.Reason == mesos.REASON_AGENT_REMOVED_BY_OPERATOR && st.AgentID.GetValue() != ""
}
