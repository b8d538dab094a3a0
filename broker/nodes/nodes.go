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
	"fmt"
	"sort"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/podresources"
)

// Names the broker writes on Nodes.
const (
	AttributeLabelPrefix = "k8sm.io/attribute-"
	AgentIDAnnotation    = "k8sm.io/agent-id"
	TaintKey             = "k8sm.io/mesos-agent"
	// LeaseHolder is the Lease holder while the broker keeps the Node alive;
	// the kubelet writes the node name instead.
	LeaseHolder       = "k8sm-broker"
	ReasonAgentActive = "K8smAgentActive"
	ReasonAgentLost   = "K8smAgentLost"
	leaseNamespace    = "kube-node-lease"
)

// Config of the mirror.
type Config struct {
	Client        kubernetes.Interface
	Cache         *offers.Cache
	LeaseDuration time.Duration // default 40s
}

type agentState struct {
	id, hostname string
	attributes   map[string]string
	capacity     podresources.Resources
	lost         bool
}

// Mirror implements framework.AgentSink.
type Mirror struct {
	cfg  Config
	mu   sync.Mutex
	byID map[string]*agentState
	wake chan struct{}
}

// New returns a mirror; Run does the writing.
func New(cfg Config) *Mirror {
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = 40 * time.Second
	}
	return &Mirror{cfg: cfg, byID: map[string]*agentState{}, wake: make(chan struct{}, 1)}
}

func (m *Mirror) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// AgentOffered implements framework.AgentSink.
func (m *Mirror) AgentOffered(_ context.Context, o *mesos.Offer) {
	m.mu.Lock()
	a, ok := m.byID[o.AgentID.Value]
	if !ok {
		a = &agentState{id: o.AgentID.Value}
		m.byID[a.id] = a
	}
	a.hostname = o.Hostname
	a.lost = false
	a.attributes = attributes(o.Attributes)
	if v, ok := m.cfg.Cache.Agent(a.id); ok {
		a.capacity = v.Capacity.Total()
	}
	m.mu.Unlock()
	if !ok {
		m.poke()
	}
}

// AgentLost implements framework.AgentSink.
func (m *Mirror) AgentLost(_ context.Context, agentID string) {
	m.mu.Lock()
	if a, ok := m.byID[agentID]; ok {
		a.lost = true
	}
	m.mu.Unlock()
	m.poke()
}

// ExecutorEnded implements framework.AgentSink: the kubelet is gone, so the
// broker takes the Node back once the kubelet's Lease runs out.
func (m *Mirror) ExecutorEnded(context.Context, string) { m.poke() }

// Run syncs every agent's Node and Lease until ctx ends.
func (m *Mirror) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.LeaseDuration / 4)
	defer t.Stop()
	for {
		m.syncAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.wake:
		}
	}
}

func (m *Mirror) syncAll(ctx context.Context) {
	m.mu.Lock()
	agents := make([]agentState, 0, len(m.byID))
	for _, a := range m.byID {
		agents = append(agents, *a)
	}
	m.mu.Unlock()
	sort.Slice(agents, func(i, j int) bool { return agents[i].hostname < agents[j].hostname })
	for i := range agents {
		if err := m.sync(ctx, &agents[i]); err != nil && ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Mirroring a Mesos agent as a Node", "node", agents[i].hostname, "agent", agents[i].id)
		}
	}
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
		out[AttributeLabelPrefix+a.Name] = v
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

func (m *Mirror) sync(ctx context.Context, a *agentState) error {
	if a.hostname == "" {
		return nil
	}
	nodes := m.cfg.Client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, a.hostname, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		if a.lost {
			return nil
		}
		node = &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.hostname}}
		m.desired(node, a)
		if node, err = nodes.Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Node %s: %w", a.hostname, err)
		}
		klog.FromContext(ctx).Info("Mirrored a Mesos agent as a Node", "node", a.hostname, "agent", a.id)
	} else if err != nil {
		return fmt.Errorf("reading Node %s: %w", a.hostname, err)
	} else {
		want := node.DeepCopy()
		m.desired(want, a)
		if !equalMeta(node, want) {
			if node, err = nodes.Update(ctx, want, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("updating Node %s: %w", a.hostname, err)
			}
		}
	}
	kubelet, err := m.kubeletOwns(ctx, a.hostname)
	if err != nil || kubelet {
		return err
	}
	return m.writeStatus(ctx, node, a)
}

// desired puts the broker's labels, annotation and taint on node, keeping
// whatever else is there (the kubelet's labels).
func (m *Mirror) desired(node *v1.Node, a *agentState) {
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	for k, v := range a.attributes {
		node.Labels[k] = v
	}
	node.Labels[v1.LabelHostname] = a.hostname
	node.Labels[v1.LabelOSStable] = "linux"
	if node.Annotations == nil {
		node.Annotations = map[string]string{}
	}
	node.Annotations[AgentIDAnnotation] = a.id
	for _, t := range node.Spec.Taints {
		if t.Key == TaintKey {
			return
		}
	}
	node.Spec.Taints = append(node.Spec.Taints, v1.Taint{Key: TaintKey, Value: "true", Effect: v1.TaintEffectNoSchedule})
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
	return m.kubeletOwns(ctx, name)
}

// kubeletOwns reports whether a kubelet renews the node's Lease: it renewed
// it within the lease duration, and either holds it under the node's name
// (it created the Lease) or was the last to write its renewTime. A kubelet
// that finds the broker's Lease keeps its holder: the lease controller
// (k8s.io/component-helpers/apimachinery/lease) only bumps renewTime of an
// existing Lease.
func (m *Mirror) kubeletOwns(ctx context.Context, name string) (bool, error) {
	l, err := m.cfg.Client.CoordinationV1().Leases(leaseNamespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the Lease of Node %s: %w", name, err)
	}
	if l.Spec.RenewTime == nil || time.Since(l.Spec.RenewTime.Time) >= m.cfg.LeaseDuration {
		return false, nil
	}
	return ptr.Deref(l.Spec.HolderIdentity, "") == name || renewedByOther(l), nil
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

func (m *Mirror) writeStatus(ctx context.Context, node *v1.Node, a *agentState) error {
	now := metav1.Now()
	cond := v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: ReasonAgentActive,
		Message: "The Mesos agent is active; k8sm keeps the Node ready until the executor's kubelet runs", LastHeartbeatTime: now, LastTransitionTime: now}
	if a.lost {
		cond.Status, cond.Reason, cond.Message = v1.ConditionFalse, ReasonAgentLost, "Mesos lost the agent"
	}
	_, err := m.cfg.Client.CoreV1().Nodes().UpdateStatus(ctx, withStatus(node, cond, a), metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		// A new Node is written at once by the control plane (the node
		// lifecycle controller taints it not-ready, IPAM sets its podCIDR),
		// so the object Create returned is already stale: without a retry
		// the Node would stay NotReady until the next sync.
		fresh, gerr := m.cfg.Client.CoreV1().Nodes().Get(ctx, node.Name, metav1.GetOptions{})
		if gerr != nil {
			return fmt.Errorf("re-reading Node %s after a conflict: %w", node.Name, gerr)
		}
		_, err = m.cfg.Client.CoreV1().Nodes().UpdateStatus(ctx, withStatus(fresh, cond, a), metav1.UpdateOptions{})
	}
	if err != nil {
		return fmt.Errorf("updating the status of Node %s: %w", node.Name, err)
	}
	if a.lost {
		return nil
	}
	return m.renewLease(ctx, node)
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

func (m *Mirror) renewLease(ctx context.Context, node *v1.Node) error {
	leases := m.cfg.Client.CoordinationV1().Leases(leaseNamespace)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(m.cfg.LeaseDuration.Seconds())
	l, err := leases.Get(ctx, node.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		l = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: node.Name, Namespace: leaseNamespace,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(LeaseHolder), LeaseDurationSeconds: &secs, RenewTime: &now},
		}
		if _, err := leases.Create(ctx, l, metav1.CreateOptions{FieldManager: LeaseHolder}); err != nil {
			return fmt.Errorf("creating the Lease of Node %s: %w", node.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the Lease of Node %s: %w", node.Name, err)
	}
	l.Spec.HolderIdentity = ptr.To(LeaseHolder)
	l.Spec.LeaseDurationSeconds = &secs
	l.Spec.RenewTime = &now
	// The field manager tells the broker's renewals from a kubelet's.
	if _, err := leases.Update(ctx, l, metav1.UpdateOptions{FieldManager: LeaseHolder}); err != nil {
		return fmt.Errorf("renewing the Lease of Node %s: %w", node.Name, err)
	}
	return nil
}
