package framework

import (
	"context"
	"sync"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"
	"k8s.io/klog/v2"
)

// Capabilities are the framework capabilities the broker subscribes with;
// its event handling depends on each of them.
//
// PARTITION_AWARE (partitionAware): a task on an agent the master cannot
// reach is reported TASK_UNREACHABLE, not TASK_LOST, and may come back. The
// pod is kept — its Node goes NotReady once no kubelet renews it, so
// Kubernetes' own eviction timing applies, as for an unreachable kubelet —
// instead of being failed and replaced while it may still run (two pods of
// one StatefulSet identity). Only TASK_GONE and TASK_GONE_BY_OPERATOR say it
// will not come back; they end the pod.
func Capabilities(partitionAware bool) []mesos.FrameworkInfo_Capability {
	caps := []mesos.FrameworkInfo_Capability{
		{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE},
		{Type: mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT},
	}
	if partitionAware {
		caps = append(caps, mesos.FrameworkInfo_Capability{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE})
	}
	return caps
}

// unreachable remembers the tasks Mesos reported TASK_UNREACHABLE, by agent.
// When a partitioned agent re-registers, the master (Mesos 1.11
// Master::__reregisterSlave, src/master/master.cpp lines 7010-7098 at tag
// 1.11.0) sends an update (REASON_AGENT_REREGISTERED) for each task the agent
// reports and silently forgets the others — a launch that never reached the
// agent — whose fate only explicit reconciliation tells: TASK_GONE, the task
// being unknown on a registered agent (Master::reconcileTasks case (3), lines
// 9056-9074). So as soon as the agent is seen back — such an update, or an
// offer from it — its unreachable tasks are reconciled, instead of at the
// next periodic reconciliation (--reconcile-interval, 5 minutes), while the
// pod of the forgotten task stays Pending.
type unreachable struct {
	mu      sync.Mutex
	byAgent map[string]map[string]bool
}

// observe records a task's latest state.
func (u *unreachable) observe(agentID, taskID string, state mesos.TaskState) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if state == mesos.TASK_UNREACHABLE {
		if agentID == "" {
			return
		}
		if u.byAgent == nil {
			u.byAgent = map[string]map[string]bool{}
		}
		if u.byAgent[agentID] == nil {
			u.byAgent[agentID] = map[string]bool{}
		}
		u.byAgent[agentID][taskID] = true
		return
	}
	for a, tasks := range u.byAgent {
		if agentID != "" && a != agentID {
			continue
		}
		delete(tasks, taskID)
		if len(tasks) == 0 {
			delete(u.byAgent, a)
		}
	}
}

// back takes the unreachable tasks of an agent that is back (offering
// resources again, or announced by the master). Each is asked about once per partition: an answer that is still
// TASK_UNREACHABLE records it again, and the periodic reconciliation covers
// a lost answer.
func (u *unreachable) back(agentID string) map[string]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	tasks := u.byAgent[agentID]
	if len(tasks) == 0 {
		return nil
	}
	delete(u.byAgent, agentID)
	out := make(map[string]string, len(tasks))
	for id := range tasks {
		out[id] = agentID
	}
	return out
}

// all lists every unreachable task (task id → agent id), keeping them:
// an answer that is not TASK_UNREACHABLE forgets each (observe).
func (u *unreachable) all() map[string]string {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string]string{}
	for a, tasks := range u.byAgent {
		for id := range tasks {
			out[id] = a
		}
	}
	return out
}

// reconcileUnreachable asks the master about every unreachable task: one
// still cut off is answered TASK_UNREACHABLE again, one whose agent came
// back with it TASK_RUNNING, and a launch the healed agent never received
// TASK_GONE, which ends its pod. An agent back with no other k8sm task is
// otherwise seen back only by its offers, and a broker with no pending pod
// suppresses them: the forgotten pod stayed Pending, bound and task-less,
// until the next periodic reconciliation (the long chaos run of 2 Dec
// 2026, agent-partition-heal).
func (f *Framework) reconcileUnreachable(ctx context.Context) {
	tasks := f.partitioned.all()
	if len(tasks) == 0 {
		return
	}
	if err := f.cfg.Caller.Call(ctx, calls.Reconcile(calls.ReconcileTasks(tasks))); err != nil {
		klog.FromContext(ctx).Error(err, "Reconciling unreachable tasks; trying again later", "tasks", len(tasks))
		return
	}
	klog.FromContext(ctx).V(2).Info("Reconciled unreachable tasks", "tasks", len(tasks))
}

// agentBack reconciles the unreachable tasks of an agent that is back.
func (f *Framework) agentBack(ctx context.Context, agentID, hostname string) {
	tasks := f.partitioned.back(agentID)
	if len(tasks) == 0 {
		return
	}
	logger := klog.FromContext(ctx)
	logger.Info("Agent is back after a partition: reconciling its unreachable tasks", "agent", agentID, "node", hostname, "tasks", len(tasks))
	// The status worker's context ends with the update's handling: the
	// call must outlive it (the Caller bounds each call).
	ctx = context.WithoutCancel(ctx)
	go func() {
		if err := f.cfg.Caller.Call(ctx, calls.Reconcile(calls.ReconcileTasks(tasks))); err != nil {
			logger.Error(err, "Reconciling the tasks of an agent back from a partition; the periodic reconciliation will", "agent", agentID)
		}
	}()
}
