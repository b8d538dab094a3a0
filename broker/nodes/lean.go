package nodes

import (
	"slices"
	"strings"
	"sync"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/pkg/mapkey"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// StripNode keeps of a cached Node only what the broker reads: its name,
// uid, resourceVersion, deletion, the labels the broker writes (hostname,
// os, owner, agent attributes), the agent id annotation, taints,
// unschedulable, the Ready condition without its message, capacity and
// allocatable. At thousands of agents the rest (the kubelet's images,
// addresses, node info, other conditions and labels, managed fields) is
// most of the informer's memory, and what is kept is shared between Nodes
// wherever it is equal (label keys, condition reasons, taints' strings,
// resource lists: 10,000 agents have a handful of distinct ones). The
// broker writes Nodes only by patches of what it owns, so nothing the cache
// lacks is written back. Use it as the informer's transform; the cached
// Nodes share maps, so they must not be modified (as any informer's).
func StripNode(obj any) (any, error) {
	n, ok := obj.(*v1.Node)
	if !ok {
		return obj, nil
	}
	return shared.node(n), nil
}

// shared is the process's table of values cached Nodes share: one, so that
// every informer of Nodes shares the same copies.
var shared = newInterner()

// interner shares equal values among cached objects. It is bounded: past
// its size a value is kept as it was decoded, so a cluster whose Nodes are
// all different costs what it did without it, and no more.
type interner struct {
	mu    sync.Mutex
	strs  map[string]string
	lists map[string]v1.ResourceList
	sets  map[string]map[string]string
}

const (
	maxInternedStrings = 4096
	maxInternedLists   = 256
	maxInternedSets    = 256
	// maxInternedLen: longer strings are rarely shared (messages, ids).
	maxInternedLen = 128
)

func newInterner() *interner {
	return &interner{strs: map[string]string{}, lists: map[string]v1.ResourceList{}, sets: map[string]map[string]string{}}
}

// str is the shared copy of s.
func (in *interner) str(s string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.strLocked(s)
}

func (in *interner) strLocked(s string) string {
	if s == "" || len(s) > maxInternedLen {
		return s
	}
	if c, ok := in.strs[s]; ok {
		return c
	}
	if len(in.strs) >= maxInternedStrings {
		return s
	}
	s = strings.Clone(s) // not a view into a decoded buffer
	in.strs[s] = s
	return s
}

// list is the shared copy of l, which must not be modified afterwards.
func (in *interner) list(l v1.ResourceList) v1.ResourceList {
	if l == nil {
		return nil
	}
	names := make([]string, 0, len(l))
	for name := range l {
		names = append(names, string(name))
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		q := l[v1.ResourceName(name)]
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(q.String())
		b.WriteByte(0)
	}
	key := b.String()
	in.mu.Lock()
	defer in.mu.Unlock()
	if c, ok := in.lists[key]; ok {
		return c
	}
	if len(in.lists) >= maxInternedLists {
		return l
	}
	in.lists[key] = l
	return l
}

// set is the shared copy of the string map m, which must not be modified
// afterwards.
func (in *interner) set(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	key := mapkey.Of(m)
	in.mu.Lock()
	defer in.mu.Unlock()
	if c, ok := in.sets[key]; ok {
		return c
	}
	if len(in.sets) >= maxInternedSets {
		return m
	}
	in.sets[key] = m
	return m
}

// brokerReads reports whether the broker reads the Node label key: one it
// writes itself.
func brokerReads(key string) bool {
	switch key {
	case v1.LabelHostname, v1.LabelOSStable, OwnerLabel:
		return true
	}
	return strings.HasPrefix(key, taskinfo.AttributeLabelPrefix)
}

// node is the lean, shared form of n (StripNode).
func (in *interner) node(n *v1.Node) *v1.Node {
	lean := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Generation: n.Generation,
			CreationTimestamp: n.CreationTimestamp, DeletionTimestamp: n.DeletionTimestamp},
		Spec:   v1.NodeSpec{Unschedulable: n.Spec.Unschedulable},
		Status: v1.NodeStatus{Capacity: in.list(n.Status.Capacity), Allocatable: in.list(n.Status.Allocatable)},
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(n.Labels) > 0 {
		lean.Labels = make(map[string]string, len(n.Labels))
		for k, v := range n.Labels {
			if !brokerReads(k) {
				continue
			}
			if v == n.Name {
				v = lean.Name // the hostname label: one string with the name
			} else {
				v = in.strLocked(v)
			}
			lean.Labels[in.strLocked(k)] = v
		}
	}
	if id, ok := n.Annotations[taskinfo.AgentIDAnnotation]; ok {
		lean.Annotations = map[string]string{taskinfo.AgentIDAnnotation: id}
	}
	if len(n.Spec.Taints) > 0 {
		lean.Spec.Taints = make([]v1.Taint, len(n.Spec.Taints))
		for i, t := range n.Spec.Taints {
			lean.Spec.Taints[i] = v1.Taint{Key: in.strLocked(t.Key), Value: in.strLocked(t.Value), Effect: v1.TaintEffect(in.strLocked(string(t.Effect))), TimeAdded: t.TimeAdded}
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			lean.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionStatus(in.strLocked(string(c.Status))),
				Reason: in.strLocked(c.Reason), LastHeartbeatTime: c.LastHeartbeatTime, LastTransitionTime: c.LastTransitionTime}}
		}
	}
	return lean
}
