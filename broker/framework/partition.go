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
// A partitioned agent that re-registers brings its tasks back without a
// status update (the master only adds them to its state again): when the
// agent offers resources again, its unreachable tasks are reconciled, and
// the master answers with their current state.
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

// back takes the unreachable tasks of an agent that is offering resources
// again. Each is asked about once per partition: an answer that is still
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

// agentsBack reconciles the unreachable tasks of agents that offered again.
func (f *Framework) agentsBack(ctx context.Context, os []mesos.Offer) {
	for i := range os {
		tasks := f.partitioned.back(os[i].AgentID.Value)
		if len(tasks) == 0 {
			continue
		}
		logger := klog.FromContext(ctx)
		logger.Info("Agent is back after a partition: reconciling its unreachable tasks", "agent", os[i].AgentID.Value, "node", os[i].Hostname, "tasks", len(tasks))
		go func() {
			if err := f.cfg.Caller.Call(ctx, calls.Reconcile(calls.ReconcileTasks(tasks))); err != nil {
				logger.Error(err, "Reconciling the tasks of an agent back from a partition; the periodic reconciliation will", "agent", os[i].AgentID.Value)
			}
		}()
	}
}
