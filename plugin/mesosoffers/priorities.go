package mesosoffers

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/cache"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
)

// priorities knows on which nodes pods of each priority run, so that
// PreFilter finds the nodes where a pod could preempt (those running a pod
// of lower priority) without scanning every node's pods for every pod. It
// is fed by the scheduler's pod informer (assigned pods) and by this
// plugin's Reserve and Unreserve, which stand for the scheduler's assumed
// pods until their binding shows in the informer. A terminal pod holds no
// Mesos resources, so evicting it makes no room, and it is not counted.
type priorities struct {
	mu   sync.RWMutex
	pods map[types.UID]podPlace
	// nodes counts the pods of each priority per node.
	nodes map[int32]map[string]int
}

// podPlace is where one counted pod runs; assumed marks a pod this plugin
// reserved that the informer has not shown bound yet.
type podPlace struct {
	node     string
	priority int32
	assumed  bool
}

func newPriorities() *priorities {
	return &priorities{pods: map[types.UID]podPlace{}, nodes: map[int32]map[string]int{}}
}

// observe takes a pod as the informer has it now.
func (x *priorities) observe(p *v1.Pod) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if p.Spec.NodeName == "" {
		// Not bound yet: keep a Reserve's assumption until it binds or is
		// dropped.
		if at, ok := x.pods[p.UID]; ok && !at.assumed {
			x.removeLocked(p.UID)
		}
		return
	}
	if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		x.removeLocked(p.UID)
		return
	}
	x.setLocked(p.UID, podPlace{node: p.Spec.NodeName, priority: corev1helpers.PodPriority(p)})
}

// assume counts a pod this plugin reserved on node before it is bound.
func (x *priorities) assume(p *v1.Pod, node string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if at, ok := x.pods[p.UID]; ok && !at.assumed {
		return
	}
	x.setLocked(p.UID, podPlace{node: node, priority: corev1helpers.PodPriority(p), assumed: true})
}

// forgetAssumed drops a Reserve's assumption (Unreserve); a pod the
// informer shows bound stays.
func (x *priorities) forgetAssumed(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if at, ok := x.pods[uid]; ok && at.assumed {
		x.removeLocked(uid)
	}
}

// forget drops a deleted pod.
func (x *priorities) forget(uid types.UID) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.removeLocked(uid)
}

func (x *priorities) setLocked(uid types.UID, at podPlace) {
	if old, ok := x.pods[uid]; ok {
		if old.node == at.node && old.priority == at.priority {
			x.pods[uid] = at
			return
		}
		x.removeLocked(uid)
	}
	x.pods[uid] = at
	byNode := x.nodes[at.priority]
	if byNode == nil {
		byNode = map[string]int{}
		x.nodes[at.priority] = byNode
	}
	byNode[at.node]++
}

func (x *priorities) removeLocked(uid types.UID) {
	at, ok := x.pods[uid]
	if !ok {
		return
	}
	delete(x.pods, uid)
	byNode := x.nodes[at.priority]
	if byNode[at.node]--; byNode[at.node] <= 0 {
		delete(byNode, at.node)
	}
	if len(byNode) == 0 {
		delete(x.nodes, at.priority)
	}
}

// below returns the nodes outside skip that run a pod of priority lower
// than prio. It costs the number of priorities in use plus the nodes it
// looks at, never the pods.
func (x *priorities) below(prio int32, skip sets.Set[string]) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []string
	var seen sets.Set[string]
	lower := 0
	for p := range x.nodes {
		if p < prio {
			lower++
		}
	}
	for p, byNode := range x.nodes {
		if p >= prio {
			continue
		}
		for node := range byNode {
			if skip.Has(node) {
				continue
			}
			if lower > 1 {
				// A node may run pods of several lower priorities.
				if seen == nil {
					seen = sets.New[string]()
				}
				if seen.Has(node) {
					continue
				}
				seen.Insert(node)
			}
			out = append(out, node)
		}
	}
	return out
}

// nodesBelow is at least the number of nodes that run a pod of priority
// lower than prio (more when a node runs pods of several such priorities).
func (x *priorities) nodesBelow(prio int32) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	n := 0
	for p, byNode := range x.nodes {
		if p < prio {
			n += len(byNode)
		}
	}
	return n
}

// podHandler feeds x from the scheduler's pod informer.
func (x *priorities) podHandler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { x.observeObj(obj) },
		UpdateFunc: func(_, obj any) { x.observeObj(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if p, ok := obj.(*v1.Pod); ok {
				x.forget(p.UID)
			}
		},
	}
}

func (x *priorities) observeObj(obj any) {
	if p, ok := obj.(*v1.Pod); ok {
		x.observe(p)
	}
}
