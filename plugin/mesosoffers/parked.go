package mesosoffers

import (
	"context"
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// parkedShape is a demand shape (shapeKey) and the parked pods that need it.
type parkedShape struct {
	demand podresources.Demand
	pods   map[types.UID]*v1.Pod
}

// parked are the pods that may be waiting for offers. Offers are not
// Kubernetes objects, so no cluster event requeues a pod Filter turned away
// for want of them: when the offer mirror changes, the parked pods that now
// fit are activated. Kept apart from the mirror, as coscheduling keeps its
// pod groups apart from the cluster state.
//
// Pods are kept by demand shape: a burst parks thousands of pods of a few
// shapes, and an offer change fits each shape once instead of each pod.
// Fitting every parked pod against every changed agent of an allocation
// held the lock that PreEnqueue, PreFilter and Reserve take in the serial
// cycle for pods × agents fits (#16).
type parked struct {
	// activate moves pods to the scheduler's active queue (Handle.Activate).
	activate func(pods map[string]*v1.Pod)

	mu     sync.Mutex
	shapes map[string]*parkedShape
	// pods is each parked pod's shape key.
	pods map[types.UID]string
}

func newParked(activate func(map[string]*v1.Pod)) *parked {
	return &parked{activate: activate, shapes: map[string]*parkedShape{}, pods: map[types.UID]string{}}
}

// park remembers a pod that is being scheduled, so that an offer arriving
// while it is in flight or after it was rejected activates it. Parking before
// the view is read closes the window in which an offer arrives between
// "Filter saw nothing" and "the pod is waiting".
func (q *parked) park(pod *v1.Pod, d podresources.Demand) {
	key := shapeKey(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	if old, ok := q.pods[pod.UID]; ok && old != key {
		q.forgetLocked(pod.UID, old)
	}
	s := q.shapes[key]
	if s == nil {
		s = &parkedShape{demand: d, pods: map[types.UID]*v1.Pod{}}
		q.shapes[key] = s
	}
	s.pods[pod.UID] = pod
	q.pods[pod.UID] = key
}

func (q *parked) unpark(uid types.UID) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if key, ok := q.pods[uid]; ok {
		q.forgetLocked(uid, key)
	}
}

func (q *parked) forgetLocked(uid types.UID, key string) {
	delete(q.pods, uid)
	if s := q.shapes[key]; s != nil {
		delete(s.pods, uid)
		if len(s.pods) == 0 {
			delete(q.shapes, key)
		}
	}
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
	for key, s := range q.shapes {
		for _, a := range agents {
			if !a.holds(s.demand) {
				continue
			}
			if out == nil {
				out = map[string]*v1.Pod{}
			}
			for uid, p := range s.pods {
				out[string(uid)] = p
				delete(q.pods, uid)
			}
			delete(q.shapes, key)
			break
		}
	}
	return out
}
