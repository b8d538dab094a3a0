// Package nodes mirrors Mesos agents as Kubernetes Nodes, so that the stock
// scheduler's plugins (affinity, spread, taints) see them. While no kubelet
// runs on an agent (no pod started the executor yet) the broker keeps the
// Node Ready and renews its Lease; otherwise the node lifecycle controller
// would taint it unreachable and no pod would ever be placed there to start
// the kubelet. Once the kubelet renews the Lease, the broker keeps out.
package nodes

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Names the broker writes on Nodes, besides those of pkg/taskinfo (the agent
// id annotation, the attribute labels and the agent taint).
const (
	// LeaseHolder is the Lease holder while the broker keeps the Node alive;
	// the kubelet writes the node name instead.
	LeaseHolder       = "k8sm-broker"
	ReasonAgentActive = "K8smAgentActive"
	ReasonAgentLost   = "K8smAgentLost"
	leaseNamespace    = "kube-node-lease"
)

// Config of the mirror.
type Config struct {
	// Client makes every request of the mirror. The broker stands in for
	// the kubelets of every agent that has none yet, so these requests grow
	// with the number of agents (one Lease renewal per agent per
	// LeaseDuration/4, as each kubelet would do) and must not queue behind
	// the broker's own requests under one kubelet's rate limit: give it a
	// client whose rate grows with the agents (the broker's has none, and
	// Workers bounds its concurrency).
	Client kubernetes.Interface
	// Nodes is an informer on Nodes shared with the rest of the broker;
	// nil: the mirror starts its own.
	Nodes coreinformers.NodeInformer
	Cache *offers.Cache
	// LeaseDuration of the Leases the broker writes (default 40s); they
	// are renewed every quarter of it.
	LeaseDuration time.Duration
	// StatusReportInterval is how often an unchanged Node status is written
	// again (default 5m, the kubelet's nodeStatusReportFrequency): the
	// Lease is the heartbeat, the status only says what changed.
	StatusReportInterval time.Duration
	// Workers syncing agents at once (default 16).
	Workers int
	// Agents lists the agents the Mesos master knows; nil: agents are
	// learnt from offers only. A framework SUPPRESSes offers while no pod
	// is pending, so an agent that joins then is offered nothing: without
	// its Node a DaemonSet makes no pod for it, and nothing ever becomes
	// pending to REVIVE offers.
	Agents AgentLister
	// AgentListInterval is how often Agents is asked (default 15s).
	AgentListInterval time.Duration
}

// AgentLister lists the agents of the leading Mesos master (the v1 operator
// API's GET_AGENTS).
type AgentLister interface {
	Agents(ctx context.Context) ([]master.Response_GetAgents_Agent, error)
}

type agentState struct {
	id, hostname string
	// attributes as labels, shared with the agents of the same attributes:
	// never modified.
	attributes map[string]string
	capacity   podresources.Resources
	lost       bool
}

// syncState is what the mirror remembers of its last writes for an agent;
// only the worker syncing the agent touches it.
type syncState struct {
	// lease is the Lease as the broker last wrote or read it: renewing it
	// is one Update, and a conflict says someone else (the kubelet) wrote
	// it.
	lease keptLease
	// kubelet: the kubelet renewed the Lease when last looked at. Atomic:
	// the informer's handler reads it.
	kubelet atomic.Bool
	// foreign: the agent's hostname is a Node the broker did not create.
	foreign bool
}

// Mirror implements framework.AgentSink.
type Mirror struct {
	cfg   Config
	queue workqueue.TypedRateLimitingInterface[string]
	// startNodes starts the informer when the mirror owns it.
	startNodes func(stop <-chan struct{})
	recorder   record.EventRecorder
	stopEvents func()

	mu     sync.Mutex
	byID   map[string]*agentState
	byHost map[string]string // hostname → agent id
	state  map[string]*syncState
	// gone are the agents Mesos says will never come back.
	gone map[string]bool
}

// New returns a mirror; Run does the writing.
func New(cfg Config) *Mirror {
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 40 * time.Second
	}
	if cfg.StatusReportInterval <= 0 {
		cfg.StatusReportInterval = 5 * time.Minute
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 16
	}
	if cfg.AgentListInterval <= 0 {
		cfg.AgentListInterval = 15 * time.Second
	}
	m := &Mirror{cfg: cfg, byID: map[string]*agentState{}, byHost: map[string]string{}, state: map[string]*syncState{}, gone: map[string]bool{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, cfg.LeaseDuration/4),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "k8sm_node_mirror"})}
	if m.cfg.Nodes == nil && cfg.Client != nil {
		f := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTransform(StripNode))
		m.cfg.Nodes = f.Core().V1().Nodes()
		m.startNodes = f.Start
	}
	if cfg.Client != nil {
		m.recorder, m.stopEvents = newRecorder(cfg.Client)
	}
	if m.cfg.Nodes != nil {
		_, _ = m.cfg.Nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(_, obj any) {
				// What happens to other Nodes is not the broker's concern.
				if n, ok := obj.(*v1.Node); ok && Owned(n) {
					m.nodeChanged(obj)
				}
			},
			DeleteFunc: m.nodeChanged,
		})
	}
	return m
}

// nodeChanged queues the agent of a Node someone else changed, when the
// change undid what the broker keeps there (the node lifecycle controller
// marked it Unknown after a missed Lease, a person deleted it), so that it
// is put right at once rather than at the next status report.
func (m *Mirror) nodeChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	n, ok := obj.(*v1.Node)
	if !ok {
		return
	}
	m.mu.Lock()
	id := m.byHost[n.Name]
	var a agentState
	if p := m.byID[id]; p != nil {
		a = *p
	}
	st := m.state[id]
	m.mu.Unlock()
	if a.id == "" || st == nil {
		return
	}
	if n.DeletionTimestamp != nil || !equalMeta(n, m.withDesired(n, &a)) ||
		(!st.kubelet.Load() && statusNeeded(n, &a, time.Time{}, 0)) {
		m.queue.Add(id)
	}
}

// AgentOffered implements framework.AgentSink.
func (m *Mirror) AgentOffered(_ context.Context, o *mesos.Offer) {
	m.mu.Lock()
	if m.gone[o.AgentID.Value] {
		m.mu.Unlock()
		return
	}
	a, ok := m.byID[o.AgentID.Value]
	if !ok {
		a = &agentState{id: o.AgentID.Value}
		m.byID[a.id] = a
		m.state[a.id] = &syncState{}
	}
	changed := !ok || a.lost || a.hostname != o.Hostname
	a.hostname = o.Hostname
	m.byHost[a.hostname] = a.id
	a.lost = false
	if attrs := attributes(o.Attributes); !maps.Equal(attrs, a.attributes) {
		changed = true
		a.attributes = shared.set(attrs)
	}
	if total, ok := m.cfg.Cache.AgentCapacity(a.id); ok {
		changed = changed || total.Scalars != a.capacity.Scalars
		a.capacity = total
	}
	m.mu.Unlock()
	if changed {
		m.queue.Add(a.id)
	}
}

// AgentHostname names the host (the Node) of an agent the mirror knows, from
// its offers or the master's agent list, lost or not.
func (m *Mirror) AgentHostname(agentID string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if a, ok := m.byID[agentID]; ok && a.hostname != "" {
		return a.hostname, true
	}
	return "", false
}

// agentListed notes an active agent the master lists: one never offered (it
// joined while offers were suppressed) gets its Node, with the capacity its
// unreserved resources give until an offer says what the framework may use;
// one lost before is back.
func (m *Mirror) agentListed(info *mesos.AgentInfo) {
	id := info.GetID().GetValue()
	if id == "" || info.GetHostname() == "" {
		return
	}
	m.mu.Lock()
	a, ok := m.byID[id]
	switch {
	case m.gone[id]:
		m.mu.Unlock()
		return
	case !ok:
		a = &agentState{id: id, hostname: info.GetHostname(), attributes: shared.set(attributes(info.Attributes)),
			capacity: podresources.FromMesos(info.Resources)[podresources.DefaultRole]}
		m.byID[id] = a
		m.state[id] = &syncState{}
		m.byHost[a.hostname] = id
	case a.lost:
		a.lost = false
	default:
		m.mu.Unlock()
		return
	}
	m.mu.Unlock()
	m.queue.Add(id)
}

// listAgents asks the master for its agents every AgentListInterval.
func (m *Mirror) listAgents(ctx context.Context) {
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		agents, err := m.cfg.Agents.Agents(ctx)
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Not listing Mesos agents now", "err", err)
			return
		}
		for i := range agents {
			if agents[i].GetActive() {
				m.agentListed(&agents[i].AgentInfo)
			}
		}
	}, m.cfg.AgentListInterval)
}

// AgentLost implements framework.AgentSink.
func (m *Mirror) AgentLost(_ context.Context, agentID string) {
	m.mu.Lock()
	a, ok := m.byID[agentID]
	if ok {
		a.lost = true
	}
	m.mu.Unlock()
	if ok {
		m.queue.Add(agentID)
	}
}

// goneKey prefixes the queue key of an agent whose Node is to be deleted.
const goneKey = "gone:"

// AgentGone implements framework.AgentSink: Mesos says the agent will never
// come back (an operator marked it gone), so its Node is deleted, as a
// cloud provider's node controller deletes the Node of a machine that no
// longer exists. The pod garbage collector then removes its pods (its
// DaemonSet pods among them) and the DaemonSet controller stops making
// pods for it. Only a Node the broker created and still names this agent
// (k8sm.io/agent-id) goes: the hostname may be taken by a new agent by now.
func (m *Mirror) AgentGone(_ context.Context, agentID string) {
	m.mu.Lock()
	m.gone[agentID] = true
	if a, ok := m.byID[agentID]; ok {
		if m.byHost[a.hostname] == agentID {
			delete(m.byHost, a.hostname)
		}
		delete(m.byID, agentID)
		delete(m.state, agentID)
	}
	m.mu.Unlock()
	m.queue.Add(goneKey + agentID)
}

// deleteGone deletes the Nodes the broker created for a gone agent.
func (m *Mirror) deleteGone(ctx context.Context, agentID string) error {
	var nodes []*v1.Node
	if m.cfg.Nodes != nil {
		all, err := m.cfg.Nodes.Lister().List(labels.SelectorFromSet(labels.Set{OwnerLabel: Owner}))
		if err != nil {
			return fmt.Errorf("listing the broker's Nodes: %w", err)
		}
		nodes = all
	} else {
		l, err := m.cfg.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: OwnerLabel + "=" + Owner})
		if err != nil {
			return fmt.Errorf("listing the broker's Nodes: %w", err)
		}
		for i := range l.Items {
			nodes = append(nodes, &l.Items[i])
		}
	}
	for _, n := range nodes {
		if !Owned(n) || n.Annotations[taskinfo.AgentIDAnnotation] != agentID || n.DeletionTimestamp != nil {
			continue
		}
		// The uid: a Node made again under the name meanwhile stays.
		err := m.cfg.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &n.UID}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("deleting Node %s of gone agent %s: %w", n.Name, agentID, err)
		}
		if err == nil {
			klog.FromContext(ctx).Info("Deleted the Node of a Mesos agent marked gone", "node", n.Name, "agent", agentID)
		}
	}
	return nil
}

// ExecutorEnded implements framework.AgentSink: the kubelet is gone, so the
// broker takes the Node back once the kubelet's Lease runs out.
func (m *Mirror) ExecutorEnded(_ context.Context, agentID string) { m.queue.Add(agentID) }

// Run syncs agents' Nodes and Leases until ctx ends: each agent when it
// changes and every LeaseDuration/4, Workers at a time.
func (m *Mirror) Run(ctx context.Context) {
	defer m.queue.ShutDown()
	if m.stopEvents != nil {
		defer m.stopEvents()
	}
	if m.startNodes != nil {
		m.startNodes(ctx.Done())
	}
	if m.cfg.Nodes != nil && !cache.WaitForCacheSync(ctx.Done(), m.cfg.Nodes.Informer().HasSynced) {
		return
	}
	var wg sync.WaitGroup
	if m.cfg.Agents != nil {
		wg.Add(1)
		go func() { defer wg.Done(); m.listAgents(ctx) }()
	}
	for range m.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for m.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	m.queue.ShutDown()
	wg.Wait()
}

func (m *Mirror) next(ctx context.Context) bool {
	id, quit := m.queue.Get()
	if quit {
		return false
	}
	defer m.queue.Done(id)
	if agentID, ok := strings.CutPrefix(id, goneKey); ok {
		if err := m.deleteGone(ctx, agentID); err != nil {
			if ctx.Err() == nil {
				klog.FromContext(ctx).Error(err, "Deleting the Node of a gone Mesos agent", "agent", agentID)
				m.queue.AddRateLimited(id)
			}
			return true
		}
		m.queue.Forget(id)
		return true
	}
	m.mu.Lock()
	a, ok := m.byID[id]
	var snapshot agentState
	if ok {
		snapshot = *a
	}
	m.mu.Unlock()
	if !ok {
		m.queue.Forget(id)
		return true
	}
	if err := m.sync(ctx, &snapshot); err != nil {
		if ctx.Err() != nil {
			return true
		}
		klog.FromContext(ctx).Error(err, "Mirroring a Mesos agent as a Node", "node", snapshot.hostname, "agent", snapshot.id)
		m.queue.AddRateLimited(id)
		return true
	}
	m.queue.Forget(id)
	if !snapshot.lost {
		m.queue.AddAfter(id, m.cfg.LeaseDuration/4)
	}
	return true
}

func attributes(attrs []mesos.Attribute) map[string]string {
	out := map[string]string{}
	for _, a := range attrs {
		var v string
		switch {
		case a.Text != nil:
			v = a.Text.Value
		case a.Scalar != nil:
			v = fmt.Sprintf("%g", a.Scalar.Value)
		default:
			continue // ranges and sets make no label values
		}
		out[taskinfo.AttributeLabelPrefix+a.Name] = v
	}
	return out
}

func resourceList(r podresources.Resources) v1.ResourceList {
	return v1.ResourceList{
		v1.ResourceCPU:              *resource.NewMilliQuantity(int64(r.CPUs), resource.DecimalSI),
		v1.ResourceMemory:           *resource.NewQuantity(int64(r.MemMB)*(1<<20)/1000, resource.BinarySI),
		v1.ResourceEphemeralStorage: *resource.NewQuantity(int64(r.DiskMB)*(1<<20)/1000, resource.BinarySI),
		v1.ResourcePods:             *resource.NewQuantity(110, resource.DecimalSI),
	}
}

// sync makes the agent's Node and Lease what they should be, with as few
// requests as it can: at steady state one Lease renewal (a kubelet's
// heartbeat), the Node read from the informer, its status written only when
// it changed or every StatusReportInterval.
func (m *Mirror) sync(ctx context.Context, a *agentState) error {
	if a.hostname == "" {
		return nil
	}
	m.mu.Lock()
	st := m.state[a.id]
	if st == nil {
		st = &syncState{}
		m.state[a.id] = st
	}
	m.mu.Unlock()
	node, err := m.node(ctx, a)
	if err != nil || node == nil {
		return err
	}
	if !Owned(node) {
		m.foreign(ctx, a, st, node)
		return nil
	}
	m.owned(a, st)
	if want := m.withDesired(node, a); !equalMeta(node, want) {
		if node, err = m.patchMeta(ctx, node, a); apierrors.IsConflict(err) {
			if node, err = m.cfg.Client.CoreV1().Nodes().Get(ctx, a.hostname, metav1.GetOptions{}); err == nil {
				node, err = m.patchMeta(ctx, node, a)
			}
		}
		if err != nil {
			return fmt.Errorf("updating Node %s: %w", a.hostname, err)
		}
	}
	if a.lost && !statusNeeded(node, a, time.Time{}, 0) {
		return nil // already says so; nothing to renew
	}
	if st.lease == nil || st.kubelet.Load() {
		l, err := m.cfg.Client.CoordinationV1().Leases(leaseNamespace).Get(ctx, a.hostname, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			st.lease = nil
			st.kubelet.Store(false)
		case err != nil:
			return fmt.Errorf("reading the Lease of Node %s: %w", a.hostname, err)
		default:
			st.kubelet.Store(kubeletRenews(l, m.cfg.LeaseDuration))
			st.lease = leanLease(l)
		}
		if st.kubelet.Load() {
			return nil
		}
	}
	if !a.lost {
		// The Lease first: it is what the node lifecycle controller reads.
		if err := m.renewLease(ctx, node, st); err != nil || st.kubelet.Load() {
			return err
		}
	}
	if !statusNeeded(node, a, time.Now(), m.cfg.StatusReportInterval) {
		return nil
	}
	return m.writeStatus(ctx, node, a)
}

// node is the agent's Node from the informer, or from the API server when
// the informer has not seen it yet; it creates the Node of a new agent. Nil
// for a lost agent without a Node.
func (m *Mirror) node(ctx context.Context, a *agentState) (*v1.Node, error) {
	if m.cfg.Nodes != nil {
		if n, err := m.cfg.Nodes.Lister().Get(a.hostname); err == nil && n.DeletionTimestamp == nil {
			return n, nil
		}
	}
	nodes := m.cfg.Client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, a.hostname, metav1.GetOptions{})
	if err == nil {
		return node, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading Node %s: %w", a.hostname, err)
	}
	if a.lost {
		return nil, nil
	}
	m.mu.Lock()
	gone := m.gone[a.id]
	m.mu.Unlock()
	if gone {
		return nil, nil // a sync that began before AgentGone
	}
	// Created with its status, as a kubelet registers its Node: one
	// request, and the node lifecycle controller never sees it not ready
	// (it only lifts the not-ready taint admission puts on every new Node).
	node = withStatus(m.withDesired(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.hostname}}, a), readyCondition(a), a)
	if node, err = nodes.Create(ctx, node, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating Node %s: %w", a.hostname, err)
	}
	klog.FromContext(ctx).Info("Mirrored a Mesos agent as a Node", "node", a.hostname, "agent", a.id)
	return node, nil
}

// statusNeeded reports whether node's status must be written: its Ready
// condition or capacity is not the agent's, or (when reportEvery > 0) the
// condition's heartbeat is older than reportEvery at now.
func statusNeeded(node *v1.Node, a *agentState, now time.Time, reportEvery time.Duration) bool {
	want, reason := v1.ConditionTrue, ReasonAgentActive
	if a.lost {
		want, reason = v1.ConditionFalse, ReasonAgentLost
	}
	var ready *v1.NodeCondition
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == v1.NodeReady {
			ready = &node.Status.Conditions[i]
		}
	}
	if ready == nil || ready.Status != want || ready.Reason != reason {
		return true
	}
	if !a.lost && !a.capacity.IsZero() {
		for name, q := range resourceList(a.capacity) {
			if have, ok := node.Status.Allocatable[name]; !ok || have.Cmp(q) != 0 {
				return true
			}
		}
	}
	return reportEvery > 0 && now.Sub(ready.LastHeartbeatTime.Time) >= reportEvery
}

// withDesired is a copy of node with the broker's metadata on it.
func (m *Mirror) withDesired(node *v1.Node, a *agentState) *v1.Node {
	n := node.DeepCopy()
	m.desired(n, a)
	return n
}

// brokerLabels are the labels the broker keeps on the agent's Node.
func brokerLabels(a *agentState) map[string]string {
	l := maps.Clone(a.attributes)
	if l == nil {
		l = map[string]string{}
	}
	l[v1.LabelHostname] = a.hostname
	l[v1.LabelOSStable] = "linux"
	l[OwnerLabel] = Owner
	return l
}

// patchMeta writes the broker's labels, annotation and taint on node with a
// merge patch of those alone, so that what the informer's copy lacks is
// kept. The taints are one list in a patch: node's resourceVersion makes it
// fail with a conflict rather than drop a taint written meanwhile.
func (m *Mirror) patchMeta(ctx context.Context, node *v1.Node, a *agentState) (*v1.Node, error) {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{
			"resourceVersion": node.ResourceVersion,
			"labels":          brokerLabels(a),
			"annotations":     map[string]string{taskinfo.AgentIDAnnotation: a.id},
		},
		"spec": map[string]any{"taints": m.withDesired(node, a).Spec.Taints},
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the patch of Node %s: %w", node.Name, err)
	}
	return m.cfg.Client.CoreV1().Nodes().Patch(ctx, node.Name, types.MergePatchType, patch, metav1.PatchOptions{})
}

// desired puts the broker's labels, annotation and taint on node, keeping
// whatever else is there (the kubelet's labels).
func (m *Mirror) desired(node *v1.Node, a *agentState) {
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	maps.Copy(node.Labels, brokerLabels(a))
	if node.Annotations == nil {
		node.Annotations = map[string]string{}
	}
	node.Annotations[taskinfo.AgentIDAnnotation] = a.id
	for _, t := range node.Spec.Taints {
		if t.Key == taskinfo.AgentTaintKey {
			return
		}
	}
	node.Spec.Taints = append(node.Spec.Taints, v1.Taint{Key: taskinfo.AgentTaintKey, Value: "true", Effect: v1.TaintEffectNoSchedule})
}

func equalMeta(a, b *v1.Node) bool {
	if len(a.Labels) != len(b.Labels) || len(a.Annotations) != len(b.Annotations) || len(a.Spec.Taints) != len(b.Spec.Taints) {
		return false
	}
	for k, v := range b.Labels {
		if a.Labels[k] != v {
			return false
		}
	}
	for k, v := range b.Annotations {
		if a.Annotations[k] != v {
			return false
		}
	}
	return true
}

// KubeletRuns reports whether a kubelet runs on the node: it renews the
// node's Lease (pods.Config.KubeletRuns).
func (m *Mirror) KubeletRuns(ctx context.Context, name string) (bool, error) {
	l, err := m.cfg.Client.CoordinationV1().Leases(leaseNamespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the Lease of Node %s: %w", name, err)
	}
	return kubeletRenews(l, m.cfg.LeaseDuration), nil
}

// kubeletRenews reports whether a kubelet renews the Lease: it was renewed
// within the lease duration, and either the kubelet holds it under the
// node's name (it created the Lease) or was the last to write its
// renewTime. A kubelet that finds the broker's Lease keeps its holder: the
// lease controller (k8s.io/component-helpers/apimachinery/lease) only bumps
// renewTime of an existing Lease.
func kubeletRenews(l *coordinationv1.Lease, leaseDuration time.Duration) bool {
	if l.Spec.RenewTime == nil || time.Since(l.Spec.RenewTime.Time) >= leaseDuration {
		return false
	}
	return ptr.Deref(l.Spec.HolderIdentity, "") == l.Name || renewedByOther(l)
}

// renewedByOther reports whether another field manager than the broker's
// owns the Lease's renewTime, i.e. wrote it last.
func renewedByOther(l *coordinationv1.Lease) bool {
	for _, mf := range l.ManagedFields {
		if mf.Manager == LeaseHolder || mf.FieldsV1 == nil {
			continue
		}
		if bytes.Contains(mf.FieldsV1.Raw, []byte(`"f:renewTime"`)) {
			return true
		}
	}
	return false
}

// readyCondition is the Ready condition the broker reports for a.
func readyCondition(a *agentState) v1.NodeCondition {
	now := metav1.Now()
	cond := v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: ReasonAgentActive,
		Message: "The Mesos agent is active; k8sm keeps the Node ready until the executor's kubelet runs", LastHeartbeatTime: now, LastTransitionTime: now}
	if a.lost {
		cond.Status, cond.Reason, cond.Message = v1.ConditionFalse, ReasonAgentLost, "Mesos lost the agent"
	}
	return cond
}

// writeStatus writes the broker's Ready condition and the agent's capacity
// with a strategic merge patch of the status: conditions merge by type, so
// the other conditions, addresses, node info and images (which the
// informer's copy lacks) stay as they are, and no resourceVersion is needed.
func (m *Mirror) writeStatus(ctx context.Context, node *v1.Node, a *agentState) error {
	n := withStatus(node, readyCondition(a), a)
	var ready v1.NodeCondition
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			ready = c
		}
	}
	status := map[string]any{"conditions": []v1.NodeCondition{ready}}
	if !a.capacity.IsZero() {
		for _, field := range []struct {
			name string
			have v1.ResourceList
		}{{"capacity", node.Status.Capacity}, {"allocatable", node.Status.Allocatable}} {
			want := map[string]any{}
			for k := range field.have {
				want[string(k)] = nil // a resource the agent no longer offers
			}
			for k, q := range resourceList(a.capacity) {
				want[string(k)] = q.String()
			}
			status[field.name] = want
		}
	}
	patch, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		return fmt.Errorf("encoding the status patch of Node %s: %w", node.Name, err)
	}
	if _, err := m.cfg.Client.CoreV1().Nodes().Patch(ctx, node.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status"); err != nil {
		return fmt.Errorf("updating the status of Node %s: %w", node.Name, err)
	}
	return nil
}

// withStatus is node with the broker's Ready condition and the agent's
// capacity.
func withStatus(node *v1.Node, cond v1.NodeCondition, a *agentState) *v1.Node {
	n := node.DeepCopy()
	found := false
	for i := range n.Status.Conditions {
		c := &n.Status.Conditions[i]
		if c.Type != v1.NodeReady {
			continue
		}
		found = true
		if c.Status == cond.Status {
			cond.LastTransitionTime = c.LastTransitionTime
		}
		*c = cond
	}
	if !found {
		n.Status.Conditions = append(n.Status.Conditions, cond)
	}
	if !a.capacity.IsZero() {
		n.Status.Capacity = resourceList(a.capacity)
		n.Status.Allocatable = resourceList(a.capacity)
	}
	return n
}

// renewLease renews the broker's Lease of node with one Update of the Lease
// it last wrote. A conflict means another writer, so it reads the Lease
// again: a kubelet that renews it takes the Node over (st.kubelet).
func (m *Mirror) renewLease(ctx context.Context, node *v1.Node, st *syncState) error {
	leases := m.cfg.Client.CoordinationV1().Leases(leaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(m.cfg.LeaseDuration.Seconds())
	for attempt := 0; ; attempt++ {
		if st.lease == nil {
			l := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: node.Name, Namespace: leaseNamespace,
					OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(LeaseHolder), LeaseDurationSeconds: &secs, RenewTime: &now},
			}
			created, err := leases.Create(ctx, l, metav1.CreateOptions{FieldManager: LeaseHolder})
			if err == nil {
				st.lease = leanLease(created)
				return nil
			}
			if !apierrors.IsAlreadyExists(err) || attempt > 0 {
				return fmt.Errorf("creating the Lease of Node %s: %w", node.Name, err)
			}
		} else {
			l, err := st.lease.decode()
			if err != nil {
				st.lease = nil
				return fmt.Errorf("renewing the Lease of Node %s: %w", node.Name, err)
			}
			l.Spec.HolderIdentity = ptr.To(LeaseHolder)
			l.Spec.LeaseDurationSeconds = &secs
			l.Spec.RenewTime = &now
			// The field manager tells the broker's renewals from a kubelet's.
			updated, err := leases.Update(ctx, l, metav1.UpdateOptions{FieldManager: LeaseHolder})
			if err == nil {
				st.lease = leanLease(updated)
				return nil
			}
			if !(apierrors.IsConflict(err) || apierrors.IsNotFound(err)) || attempt > 0 {
				st.lease = nil
				return fmt.Errorf("renewing the Lease of Node %s: %w", node.Name, err)
			}
		}
		fresh, err := m.cfg.Client.CoordinationV1().Leases(leaseNamespace).Get(ctx, node.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			st.lease = nil
		case err != nil:
			st.lease = nil
			return fmt.Errorf("reading the Lease of Node %s: %w", node.Name, err)
		default:
			renews := kubeletRenews(fresh, m.cfg.LeaseDuration)
			st.lease = leanLease(fresh)
			if renews {
				st.kubelet.Store(true)
				return nil
			}
		}
	}
}

// keptLease is a Lease as the mirror keeps it for the next renewal: its
// protobuf encoding without managed fields. One is kept per agent, and a
// decoded Lease costs ~600 bytes of Go structs and strings where its
// encoding takes ~200 (BenchmarkLeaseHeap); a renewal decodes it into the
// fresh copy it sends, as the DeepCopy it replaces made one. Every field
// but the managed ones goes back to the API server as it was read, so an
// Update drops nothing another writer put on the Lease.
type keptLease []byte

// leanLease is what the mirror keeps of l (which it modifies). Without
// managed fields: at 10,000 agents they were a third of the Leases, and an
// Update that carries none leaves the API server's as they are (it takes
// the live object's), so the field manager of renewTime, which tells a
// kubelet's renewal from the broker's (renewedByOther), is still tracked;
// only Leases read fresh are asked. A Lease that does not encode is not
// kept: the next renewal reads it again.
func leanLease(l *coordinationv1.Lease) keptLease {
	l.ManagedFields = nil
	b, err := l.Marshal()
	if err != nil {
		return nil
	}
	return b
}

// decode returns a new copy of the kept Lease.
func (k keptLease) decode() (*coordinationv1.Lease, error) {
	l := &coordinationv1.Lease{}
	if err := l.Unmarshal(k); err != nil {
		return nil, fmt.Errorf("decoding the Lease kept for renewal: %w", err)
	}
	return l, nil
}
