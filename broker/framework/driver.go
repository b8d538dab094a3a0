package framework

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	"github.com/k8sm/k8sm/broker/metrics"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Driver makes the Mesos calls the pod controller asks for: SUPPRESS while
// no pod is pending and REVIVE when one is, and KILL of a pod's task. It is
// built before both the Framework and the pod controller and shared by them:
// the controller drives it, the Framework's events tell it whether it is
// subscribed and where tasks run. So neither of the two needs the other to
// exist first.
type Driver struct {
	caller brokermesos.Caller
	// roles SUPPRESS and REVIVE apply to.
	roles []string

	mu sync.Mutex
	// taskAgents remembers where tasks run, for KILLs that name no agent.
	taskAgents map[string]string
	// podTasks indexes taskAgents' ids by pod: every launch asks for its
	// pod's earlier attempts, and a scan of every task under mu cost a
	// millisecond per launch at 10,000 tasks, held against the status
	// workers.
	podTasks   map[types.UID][]string
	pending    bool
	suppressed *bool // nil: unknown (not yet told Mesos)
	subscribed bool
	wake       chan struct{}
}

// NewDriver returns a Driver that calls Mesos through caller, for the
// framework's roles (default "*").
func NewDriver(caller brokermesos.Caller, roles []string) *Driver {
	if len(roles) == 0 {
		roles = []string{podresources.DefaultRole}
	}
	return &Driver{
		caller:     caller,
		roles:      roles,
		taskAgents: map[string]string{},
		podTasks:   map[types.UID][]string{},
		pending:    true, // until told otherwise: never starve a pod at startup
		wake:       make(chan struct{}, 1),
	}
}

// Run keeps Mesos' suppression in line with the pending pods until ctx ends.
func (d *Driver) Run(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		d.syncSuppression(ctx)
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		case <-t.C:
		}
	}
}

func (d *Driver) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// SetPending says whether any pod waits for resources: SUPPRESS when none
// does, REVIVE as soon as one does.
func (d *Driver) SetPending(pending bool) {
	d.mu.Lock()
	changed := d.pending != pending
	d.pending = pending
	d.mu.Unlock()
	if changed {
		d.poke()
	}
}

// Revive asks Mesos for offers again now (a new pod is pending): it also
// clears the refuse filters of earlier declines.
func (d *Driver) Revive() {
	d.mu.Lock()
	d.pending = true
	d.suppressed = nil
	d.mu.Unlock()
	d.poke()
}

// Pending reports whether any pod waits for resources.
func (d *Driver) Pending() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending
}

// setSubscribed records a new subscription (or its loss). Either way Mesos'
// suppression is unknown: a new subscription starts unsuppressed, so it is
// told again.
func (d *Driver) setSubscribed(subscribed bool) {
	d.mu.Lock()
	d.subscribed = subscribed
	d.suppressed = nil
	d.mu.Unlock()
	if subscribed {
		d.poke()
	}
}

func (d *Driver) isSubscribed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.subscribed
}

func (d *Driver) syncSuppression(ctx context.Context) {
	d.mu.Lock()
	want := !d.pending
	if !d.subscribed || (d.suppressed != nil && *d.suppressed == want) {
		d.mu.Unlock()
		return
	}
	d.mu.Unlock()
	call := calls.ReviveWith(d.roles)
	if want {
		call = calls.SuppressWith(d.roles)
	}
	if err := d.caller.Call(ctx, call); err != nil {
		klog.FromContext(ctx).Error(err, "Changing offer suppression", "suppress", want)
		return
	}
	klog.FromContext(ctx).V(2).Info("Offer suppression changed", "suppressed", want, "roles", d.roles)
	if want {
		metrics.Suppressed.Set(1)
	} else {
		metrics.Suppressed.Set(0)
	}
	d.mu.Lock()
	d.suppressed = &want
	d.mu.Unlock()
}

// taskAt records that a task runs on agentID; taskEnded forgets it.
func (d *Driver) taskAt(taskID, agentID string) {
	d.mu.Lock()
	if _, known := d.taskAgents[taskID]; !known {
		uid := taskinfo.PodUID(taskID)
		d.podTasks[uid] = append(d.podTasks[uid], taskID)
	}
	d.taskAgents[taskID] = agentID
	d.mu.Unlock()
}

func (d *Driver) taskAgent(taskID string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.taskAgents[taskID]
}

func (d *Driver) taskEnded(taskID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, known := d.taskAgents[taskID]; !known {
		return
	}
	delete(d.taskAgents, taskID)
	uid := taskinfo.PodUID(taskID)
	ids := slices.DeleteFunc(d.podTasks[uid], func(id string) bool { return id == taskID })
	if len(ids) == 0 {
		delete(d.podTasks, uid)
	} else {
		d.podTasks[uid] = ids
	}
}

// PodTasks are the live tasks of pod uid this broker launched or heard of.
func (d *Driver) PodTasks(uid types.UID) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.podTasks[uid])
}

// ReconcileTasks asks the master for the state of these tasks (task id →
// agent id, "" when unknown); the answers arrive as status updates.
func (d *Driver) ReconcileTasks(ctx context.Context, tasks map[string]string) error {
	if err := d.caller.Call(ctx, calls.Reconcile(calls.ReconcileTasks(tasks))); err != nil {
		return fmt.Errorf("reconciling %d tasks: %w", len(tasks), err)
	}
	metrics.ReconcileRuns.WithLabelValues("explicit", "success").Inc()
	return nil
}

// KillTask kills a task for a reason (metrics and logs say which); agentID
// may be empty when unknown, and then the agent the task was last seen on
// is named.
func (d *Driver) KillTask(ctx context.Context, taskID, agentID, reason string) error {
	if agentID == "" {
		d.mu.Lock()
		agentID = d.taskAgents[taskID]
		d.mu.Unlock()
	}
	if err := d.caller.Call(ctx, calls.Kill(taskID, agentID)); err != nil {
		return fmt.Errorf("killing task %s: %w", taskID, err)
	}
	metrics.Kills.WithLabelValues(reason).Inc()
	klog.FromContext(ctx).V(2).Info("Killing task", "task", taskID, "agent", agentID, "reason", reason)
	return nil
}
