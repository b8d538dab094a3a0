package nodes

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"
	"unsafe"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// agentNode is agent a's Node as the API server returns it once the broker
// created it and the kube-controller-manager and others had their turn:
// what the broker wrote, plus labels, annotations, conditions, status and
// managed fields of others.
func agentNode(a *agentState, i int) *v1.Node {
	m := New(Config{})
	n := withStatus(m.withDesired(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.hostname}}, a), readyCondition(a), a)
	n.UID = types.UID(fmt.Sprintf("0b4d2c3e-8d59-4c2b-9e8a-%012d", i))
	n.ResourceVersion = fmt.Sprint(100000 + i)
	n.CreationTimestamp = metav1.NewTime(time.Unix(1764600000, 0))
	n.Labels["kubernetes.io/arch"] = "amd64"
	n.Annotations["node.alpha.kubernetes.io/ttl"] = "0"
	n.Spec.PodCIDR = fmt.Sprintf("10.%d.%d.0/24", i/256, i%256)
	n.Spec.PodCIDRs = []string{n.Spec.PodCIDR}
	n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: "example.com/other", Value: "v", Effect: v1.TaintEffectPreferNoSchedule})
	n.Status.Conditions = append(n.Status.Conditions, v1.NodeCondition{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse,
		Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"})
	n.Status.Addresses = []v1.NodeAddress{{Type: v1.NodeHostName, Address: a.hostname}}
	n.ManagedFields = []metav1.ManagedFieldsEntry{
		{Manager: "k8sm-broker", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &n.CreationTimestamp, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{".":{},"f:k8sm.io/agent-id":{}},"f:labels":{".":{},"f:k8sm.io/attribute-rack":{},"f:kubernetes.io/hostname":{},"f:kubernetes.io/os":{}}},"f:spec":{"f:taints":{}}}`)}},
		{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &n.CreationTimestamp, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:node.alpha.kubernetes.io/ttl":{}}},"f:spec":{"f:podCIDR":{},"f:podCIDRs":{".":{},"v:\"10.0.0.0/24\"":{}}}}`)}},
		{Manager: "k8sm-broker", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &n.CreationTimestamp, FieldsType: "FieldsV1", Subresource: "status",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:status":{"f:allocatable":{"f:cpu":{},"f:memory":{}},"f:capacity":{"f:cpu":{},"f:memory":{}},"f:conditions":{"k:{\"type\":\"Ready\"}":{"f:lastHeartbeatTime":{},"f:message":{},"f:reason":{},"f:status":{}}}}}`)}},
	}
	return n
}

func benchAgent(i int) *agentState {
	return &agentState{id: fmt.Sprintf("4f1b7c52-0c1e-4a5b-9d3f-7e0a1b2c3d4e-S%d", i), hostname: fmt.Sprintf("hollow-%05d", i),
		attributes: map[string]string{taskinfo.AttributeLabelPrefix + "rack": "r1"},
		capacity:   podresources.Resources{Scalars: podresources.Scalars{CPUs: 8000, MemMB: 32768000, DiskMB: 100000000}}}
}

// TestStripNodeKeepsWhatTheBrokerReads: every decision the broker takes on
// a cached Node — is it the broker's, is its metadata as the agent wants
// it, must its status be written, which agent is it, which taints go back
// in a patch, which resources a status patch removes — comes out the same
// on the lean Node as on the whole one, and what the broker does not read
// is gone.
func TestStripNodeKeepsWhatTheBrokerReads(t *testing.T) {
	m := New(Config{})
	a := benchAgent(7)
	full := agentNode(a, 7)
	full.Status.Capacity["example.com/gone"] = resource.MustParse("1")
	full.DeletionTimestamp = ptrTime(time.Unix(1764600100, 0))
	full = decoded(t, full)
	obj, err := StripNode(full.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	lean := obj.(*v1.Node)

	changedAttr := *a
	changedAttr.attributes = map[string]string{taskinfo.AttributeLabelPrefix + "rack": "r2"}
	changedCap := *a
	changedCap.capacity.Scalars.CPUs = 4000
	lost := *a
	lost.lost = true
	now := full.Status.Conditions[0].LastHeartbeatTime.Add(time.Minute)
	for _, agent := range []*agentState{a, &changedAttr, &changedCap, &lost} {
		if got, want := equalMeta(lean, m.withDesired(lean, agent)), equalMeta(full, m.withDesired(full, agent)); got != want {
			t.Errorf("agent %+v: metadata as wanted on the lean Node %v, on the whole one %v", agent, got, want)
		}
		for _, every := range []time.Duration{0, 5 * time.Minute, 30 * time.Second} {
			if got, want := statusNeeded(lean, agent, now, every), statusNeeded(full, agent, now, every); got != want {
				t.Errorf("agent %+v, report every %v: status needed on the lean Node %v, on the whole one %v", agent, every, got, want)
			}
		}
	}
	if !Owned(lean) || lean.Annotations[taskinfo.AgentIDAnnotation] != a.id {
		t.Errorf("lean Node: owned %v, agent %q; want the broker's, of %s", Owned(lean), lean.Annotations[taskinfo.AgentIDAnnotation], a.id)
	}
	if !reflect.DeepEqual(lean.Spec.Taints, full.Spec.Taints) || !reflect.DeepEqual(m.withDesired(lean, a).Spec.Taints, m.withDesired(full, a).Spec.Taints) {
		t.Errorf("taints %v, want every taint of the Node %v", lean.Spec.Taints, full.Spec.Taints)
	}
	for _, l := range []struct {
		name       string
		lean, full v1.ResourceList
	}{{"capacity", lean.Status.Capacity, full.Status.Capacity}, {"allocatable", lean.Status.Allocatable, full.Status.Allocatable}} {
		if len(l.lean) != len(l.full) {
			t.Errorf("%s %v, want %v", l.name, l.lean, l.full)
		}
		for k, q := range l.full {
			if have, ok := l.lean[k]; !ok || have.Cmp(q) != 0 {
				t.Errorf("%s[%s] = %v, want %v", l.name, k, have, q)
			}
		}
	}
	if lean.Name != full.Name || lean.UID != full.UID || lean.ResourceVersion != full.ResourceVersion || !lean.DeletionTimestamp.Equal(full.DeletionTimestamp) {
		t.Errorf("lean metadata %+v, want name, uid, resourceVersion and deletion of %+v", lean.ObjectMeta, full.ObjectMeta)
	}
	if _, ok := lean.Labels["kubernetes.io/arch"]; ok || len(lean.Annotations) != 1 || len(lean.ManagedFields) != 0 ||
		lean.Spec.PodCIDR != "" || len(lean.Status.Addresses) != 0 || len(lean.Status.Conditions) != 1 || lean.Status.Conditions[0].Message != "" {
		t.Errorf("the lean Node keeps what the broker does not read: %+v", lean)
	}
}

func ptrTime(t time.Time) *metav1.Time { m := metav1.NewTime(t); return &m }

// TestStripNodeShares: Nodes of agents alike share their resource lists,
// label keys and condition reasons instead of one copy each.
func TestStripNodeShares(t *testing.T) {
	var lean []*v1.Node
	for i := range 2 {
		obj, err := StripNode(decoded(t, agentNode(benchAgent(i), i)))
		if err != nil {
			t.Fatal(err)
		}
		lean = append(lean, obj.(*v1.Node))
	}
	same := func(a, b any) bool { return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer() }
	if !same(lean[0].Status.Capacity, lean[1].Status.Capacity) || !same(lean[0].Status.Capacity, lean[1].Status.Allocatable) {
		t.Error("equal resource lists of two Nodes are two maps")
	}
	if r0, r1 := lean[0].Status.Conditions[0].Reason, lean[1].Status.Conditions[0].Reason; r0 != ReasonAgentActive || unsafeStringData(r0) != unsafeStringData(r1) {
		t.Errorf("Ready reasons %q and %q are two strings", r0, r1)
	}
	if h := lean[0].Labels[v1.LabelHostname]; h != lean[0].Name || unsafeStringData(h) != unsafeStringData(lean[0].Name) {
		t.Errorf("hostname label %q is a string apart from the name %q", h, lean[0].Name)
	}
}

func unsafeStringData(s string) *byte { return unsafe.StringData(s) }

// decoded is n as an informer gets it: each string, map and list a
// separate allocation of the protobuf decoder.
func decoded(t testing.TB, n *v1.Node) *v1.Node {
	b, err := n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	out := &v1.Node{}
	if err := out.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInternerIsBounded: a cluster whose Nodes all differ costs the table
// no more than its bound.
func TestInternerIsBounded(t *testing.T) {
	in := newInterner()
	for i := range 2 * maxInternedStrings {
		in.str(fmt.Sprint("value-", i))
		in.list(v1.ResourceList{v1.ResourceCPU: *resource.NewMilliQuantity(int64(i), resource.DecimalSI)})
		in.set(map[string]string{"k": fmt.Sprint(i)})
	}
	if len(in.strs) > maxInternedStrings || len(in.lists) > maxInternedLists || len(in.sets) > maxInternedSets {
		t.Errorf("table sizes %d, %d, %d; bounds %d, %d, %d", len(in.strs), len(in.lists), len(in.sets), maxInternedStrings, maxInternedLists, maxInternedSets)
	}
	l := v1.ResourceList{v1.ResourceCPU: resource.MustParse("99999")}
	if got := in.list(l); reflect.ValueOf(got).UnsafePointer() != reflect.ValueOf(l).UnsafePointer() {
		t.Errorf("a list past the bound came back as another map %v, want itself", got)
	}
}

// TestKeptLeaseHasNoManagedFields: the Lease the mirror keeps for its next
// renewal holds no managed fields (the API server keeps its own when an
// Update carries none), and renewing from it still works.
func TestKeptLeaseHasNoManagedFields(t *testing.T) {
	client := apiServerLike(t, false)
	m, ctx := startedMirror(t, client)
	a := &agentState{id: "S1", hostname: "h1"}
	for i := range 2 {
		if err := m.sync(ctx, a); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
		st := m.state[a.id]
		if st == nil || st.lease == nil {
			t.Fatalf("sync %d: no Lease kept", i)
		}
		kept, err := st.lease.decode()
		if err != nil || len(kept.ManagedFields) != 0 || kept.Name != "h1" {
			t.Fatalf("sync %d: kept Lease %+v (%v), want h1's without managed fields", i, kept, err)
		}
	}
	got, err := client.CoordinationV1().Leases(leaseNamespace).Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.ManagedFields) != 1 || got.ManagedFields[0].Manager != LeaseHolder {
		t.Errorf("the Lease's managed fields %+v, want the broker's entry kept by the API server", got.ManagedFields)
	}
}

// BenchmarkNodeCacheHeap: the live heap of 10,000 agents' Nodes as the
// broker's informer keeps them: decoded from protobuf as the API server
// sends them, then StripNode. Run it on an older tree with this file to
// compare.
func BenchmarkNodeCacheHeap(b *testing.B) {
	const agents = 10000
	wire := make([][]byte, agents)
	for i := range wire {
		n := agentNode(benchAgent(i), i)
		var err error
		if wire[i], err = n.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
	reportKeptHeap(b, wire, "node", func(w []byte) (any, error) {
		n := &v1.Node{}
		if err := n.Unmarshal(w); err != nil {
			return nil, err
		}
		return StripNode(n)
	})
}

// reportKeptHeap reports the live heap that decoding each of wire with
// keep and holding every result at once costs (a full collection before
// and after), per object (heapB/<what>) and for all of them (MiB/10k: wire
// is 10,000 agents' objects).
func reportKeptHeap(b *testing.B, wire [][]byte, what string, keep func(w []byte) (any, error)) {
	var per float64
	for range b.N {
		kept := make([]any, len(wire))
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i, w := range wire {
			var err error
			if kept[i], err = keep(w); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per = float64(after.HeapAlloc-before.HeapAlloc) / float64(len(wire))
		runtime.KeepAlive(kept)
	}
	b.ReportMetric(per, "heapB/"+what)
	b.ReportMetric(per*float64(len(wire))/(1<<20), "MiB/10k")
}

// TestRenewalKeepsWhatOthersPutOnTheLease: the mirror renews from the Lease
// it kept, so what another writer put on the Lease (a label, an
// annotation) survives the broker's renewals, and renewTime moves on.
func TestRenewalKeepsWhatOthersPutOnTheLease(t *testing.T) {
	client := apiServerLike(t, false)
	m, ctx := startedMirror(t, client)
	a := &agentState{id: "S1", hostname: "h1"}
	if err := m.sync(ctx, a); err != nil {
		t.Fatal(err)
	}
	leases := client.CoordinationV1().Leases(leaseNamespace)
	l, err := leases.Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Labels = map[string]string{"team": "infra"}
	l.Annotations = map[string]string{"note": "kept"}
	theirs, err := leases.Update(ctx, l, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := m.sync(ctx, a); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
	}
	got, err := leases.Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels["team"] != "infra" || got.Annotations["note"] != "kept" {
		t.Errorf("after the broker's renewals the Lease has labels %v, annotations %v: another writer's were dropped", got.Labels, got.Annotations)
	}
	if got.ResourceVersion == theirs.ResourceVersion || ptr.Deref(got.Spec.HolderIdentity, "") != LeaseHolder {
		t.Errorf("the Lease is at version %s (the other writer's: %s), held by %q: want the broker's renewal on top", got.ResourceVersion, theirs.ResourceVersion, ptr.Deref(got.Spec.HolderIdentity, ""))
	}
	if len(got.OwnerReferences) != 1 || got.OwnerReferences[0].Kind != "Node" {
		t.Errorf("the Lease's owners %v, want its Node", got.OwnerReferences)
	}
}
