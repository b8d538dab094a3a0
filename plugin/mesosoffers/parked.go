package mesosoffers

import (
	"context"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// parkedPod is a pod that may be waiting for offers, with what it needs.
type parkedPod struct {
	pod    *v1.Pod
	demand podresources.Demand
}

// parked are the pods that may be waiting for offers. Offers are not
// Kubernetes objects, so no cluster event requeues a pod Filter turned away
// for want of them: when the offer mirror changes, the parked pods that now
// fit are activated. Kept apart from the mirror, as coscheduling keeps its
// pod groups apart from the cluster state.
type parked struct {
	// activate moves pods to the scheduler's active queue (Handle.Activate).
	activate func(pods map[string]*v1.Pod)

	mu   sync.Mutex
	pods map[types.UID]parkedPod
}

func newParked(activate func(map[string]*v1.Pod)) *parked {
	return &parked{activate: activate, pods: map[types.UID]parkedPod{}}
}

// park remembers a pod that is being scheduled, so that an offer arriving
// while it is in flight or after it was rejected activates it. Parking before
// the view is read closes the window in which an offer arrives between
// "Filter saw nothing" and "the pod is waiting".
func (q *parked) park(pod *v1.Pod, d podresources.Demand) {
	q.mu.Lock()
	q.pods[pod.UID] = parkedPod{pod: pod, demand: d}
	q.mu.Unlock()
}

func (q *parked) unpark(uid types.UID) {
	q.mu.Lock()
	delete(q.pods, uid)
	q.mu.Unlock()
}

func (q *parked) count() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.pods)
}

// offersChanged activates the parked pods that fit one of the agents the
// mirror just changed. The mirror holds the change already: a pod parked
// after this looks finds the offers in the view itself.
func (q *parked) offersChanged(ctx context.Context, agents []*agent) {
	q.mu.Lock()
	pods := q.fittingLocked(agents)
	q.mu.Unlock()
	if len(pods) > 0 {
		klog.FromContext(ctx).V(4).Info("Activating pods after new offers", "pods", len(pods))
		q.activate(pods)
	}
}

// fittingLocked picks the parked pods that fit one of the agents and
// forgets them: a pod that fails again is parked again by PreFilter.
func (q *parked) fittingLocked(agents []*agent) map[string]*v1.Pod {
	if len(agents) == 0 || len(q.pods) == 0 {
		return nil
	}
	var out map[string]*v1.Pod
	for uid, p := range q.pods {
		for _, a := range agents {
			if a.holds(p.demand) {
				if out == nil {
					out = map[string]*v1.Pod{}
				}
				out[string(uid)] = p.pod
				delete(q.pods, uid)
				break
			}
		}
	}
	return out
}
