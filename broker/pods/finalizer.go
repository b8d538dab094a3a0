package pods

import (
	"context"
	"fmt"
	"slices"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// A pod's end waits for Mesos: a pod carrying taskinfo.TaskFinalizer stays
// in the API server, Terminating, until Mesos reported every task of it
// ended. The kubelet removes a pod once its containers stopped, but the
// master hears of that through a status update that can wait in the agent
// for tens of seconds (behind an acknowledgement lost in a master
// failover); a StatefulSet recreating the name meanwhile would make Mesos
// count two live tasks of one identity. The broker is the one that knows.

// releaseRecheck is how often a pod held for its tasks is looked at again
// while no status arrives (a status that ends a task re-queues it at once).
const releaseRecheck = 5 * time.Second

// askEvery bounds how often the master is asked about one pod's attempt.
const askEvery = 30 * time.Second

// heldForTasks: the pod is being deleted and waits for the broker.
func heldForTasks(p *v1.Pod) bool {
	return p.DeletionTimestamp != nil && slices.Contains(p.Finalizers, taskinfo.TaskFinalizer)
}

// finalDelete: the pod's deletion is final (grace 0, as the kubelet
// deletes a stopped pod, or forced); without finalizers it would be gone.
func finalDelete(p *v1.Pod) bool {
	return p.DeletionTimestamp != nil && p.DeletionGracePeriodSeconds != nil && *p.DeletionGracePeriodSeconds == 0
}

// release removes the task finalizer of a pod being deleted once no task
// of it may still live in Mesos: the attempt it is bound as ended (its
// terminal status was seen) and the framework knows no other live attempt.
// An unbound pod's attempts are all known once the subscription was
// reconciled. Until then: a pod whose deletion is final gets its tasks
// killed (what the deletion of the object did before the finalizer); an
// attempt this broker knows nothing of (a restart since its end) is asked
// of the master, whose answer decides.
func (c *Controller) release(ctx context.Context, p *v1.Pod) error {
	logger := klog.FromContext(ctx)
	if c.cfg.Reconciled != nil && !c.cfg.Reconciled() {
		c.queue.AddAfter(p.UID, releaseRecheck)
		return nil
	}
	live := c.cfg.Framework.PodTasks(p.UID)
	current := ""
	if p.Spec.NodeName != "" {
		current = taskinfo.PodTaskID(p)
	}
	currentEnded := current == "" || c.attemptEnded(current)
	if len(live) == 0 && currentEnded {
		return c.removeFinalizer(ctx, p)
	}
	agentID := ""
	if p.Spec.NodeName != "" {
		agentID = c.agentOfNode(p.Spec.NodeName)
	}
	if finalDelete(p) || current == "" {
		tasks := slices.Clone(live)
		if !currentEnded && !slices.Contains(tasks, current) {
			tasks = append(tasks, current)
		}
		for _, task := range tasks {
			if err := c.cfg.Framework.KillTask(ctx, task, agentID, "pod-deleted"); err != nil {
				return fmt.Errorf("killing task %s of pod %s, deleted: %w", task, klog.KObj(p), err)
			}
		}
	}
	if !currentEnded && !slices.Contains(live, current) && c.mayAsk(p.UID) {
		logger.V(2).Info("Asking the master about the attempt of a deleted pod", "pod", klog.KObj(p), "task", current)
		if err := c.cfg.Framework.ReconcileTasks(ctx, map[string]string{current: agentID}); err != nil {
			return fmt.Errorf("asking the master about task %s of pod %s, deleted: %w", current, klog.KObj(p), err)
		}
	}
	c.queue.AddAfter(p.UID, releaseRecheck)
	return nil
}

func (c *Controller) attemptEnded(taskID string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.ended[taskID]
	return ok
}

// mayAsk says whether the master may be asked about the pod's attempt now.
func (c *Controller) mayAsk(uid types.UID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.asked[uid]) < askEvery {
		return false
	}
	c.asked[uid] = time.Now()
	return true
}

// removeFinalizer takes the task finalizer off the pod: a JSON patch that
// tests the UID and the entry, so a pod replaced or changed meanwhile is
// left for its next event.
func (c *Controller) removeFinalizer(ctx context.Context, p *v1.Pod) error {
	i := slices.Index(p.Finalizers, taskinfo.TaskFinalizer)
	if i < 0 {
		return nil
	}
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/uid","value":%q},{"op":"test","path":"/metadata/finalizers/%d","value":%q},{"op":"remove","path":"/metadata/finalizers/%d"}]`,
		p.UID, i, taskinfo.TaskFinalizer, i)
	c.mu.Lock()
	_, already := c.released[p.UID]
	c.released[p.UID] = struct{}{}
	c.mu.Unlock()
	if already {
		// Released by an earlier sync; this copy of the pod predates it.
		return nil
	}
	_, err := c.cfg.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
	switch {
	case err == nil:
		klog.FromContext(ctx).V(2).Info("Released a deleted pod: every task of it ended", "pod", klog.KObj(p))
		return nil
	case apierrors.IsNotFound(err):
		return nil
	}
	c.mu.Lock()
	delete(c.released, p.UID)
	c.mu.Unlock()
	return fmt.Errorf("removing finalizer %s from pod %s, whose tasks ended: %w", taskinfo.TaskFinalizer, klog.KObj(p), err)
}
