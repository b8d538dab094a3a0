package nodes

import (
	"context"
	"errors"
	"strconv"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// TestNodeFromAgent: attributes become k8sm.io/attribute-* labels, the
// broker's taint is added once, the kubelet's own labels stay, and
// capacity is the agent's resources in Kubernetes units.
func TestNodeFromAgent(t *testing.T) {
	a := &agentState{id: "S1", hostname: "h1", attributes: attributes([]mesos.Attribute{
		{Name: "rack", Type: mesos.TEXT, Text: &mesos.Value_Text{Value: "r1"}},
		{Name: "weight", Type: mesos.SCALAR, Scalar: &mesos.Value_Scalar{Value: 2.5}},
		{Name: "zones", Type: mesos.SET, Set: &mesos.Value_Set{Item: []string{"a"}}},
	})}
	n := &v1.Node{}
	n.Labels = map[string]string{"kubelet.example/own": "x"}
	m := New(Config{})
	m.desired(n, a)
	m.desired(n, a)
	want := map[string]string{"kubelet.example/own": "x", AttributeLabelPrefix + "rack": "r1", AttributeLabelPrefix + "weight": "2.5", v1.LabelHostname: "h1", v1.LabelOSStable: "linux"}
	if len(n.Labels) != len(want) {
		t.Errorf("labels %v, want %v", n.Labels, want)
	}
	for k, v := range want {
		if n.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, n.Labels[k], v)
		}
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != TaintKey || n.Spec.Taints[0].Effect != v1.TaintEffectNoSchedule {
		t.Errorf("taints %v", n.Spec.Taints)
	}
	if n.Annotations[AgentIDAnnotation] != "S1" {
		t.Errorf("agent id annotation %q", n.Annotations[AgentIDAnnotation])
	}
	rl := resourceList(podresources.Resources{Scalars: podresources.Scalars{CPUs: 3500, MemMB: 2048000, DiskMB: 1024000}})
	cpu, mem, disk := rl[v1.ResourceCPU], rl[v1.ResourceMemory], rl[v1.ResourceEphemeralStorage]
	if cpu.MilliValue() != 3500 || mem.Value() != 2048<<20 || disk.Value() != 1024<<20 {
		t.Errorf("capacity cpu=%s mem=%s disk=%s, want 3500m, 2Gi, 1Gi", cpu.String(), mem.String(), disk.String())
	}
}

// A kubelet that finds the broker's Lease keeps its holder and only writes
// renewTime: the last writer of renewTime tells who renews.
func TestRenewedByOther(t *testing.T) {
	owns := func(manager string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:renewTime":{}}}`)}}
	}
	holds := metav1.ManagedFieldsEntry{Manager: LeaseHolder, Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:holderIdentity":{},"f:leaseDurationSeconds":{}}}`)}}
	for name, c := range map[string]struct {
		fields []metav1.ManagedFieldsEntry
		want   bool
	}{
		"broker renews":              {[]metav1.ManagedFieldsEntry{owns(LeaseHolder)}, false},
		"kubelet renews":             {[]metav1.ManagedFieldsEntry{holds, owns("k8sm-executor")}, true},
		"no managed fields (a fake)": {nil, false},
	} {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{ManagedFields: c.fields}}
		if got := renewedByOther(l); got != c.want {
			t.Errorf("%s: renewedByOther = %v, want %v", name, got, c.want)
		}
	}
}

// TestNewNodeReadyAfterOneSync: the control plane writes a new Node at once
// (the node lifecycle controller taints it not-ready), so the object Create
// returned is stale by the time the broker writes its status. The Node of a
// new agent must still be Ready, and its Lease held, after one sync.
func TestNewNodeReadyAfterOneSync(t *testing.T) {
	client := fake.NewSimpleClientset()
	tracker := client.Tracker()
	nodesGVR := v1.SchemeGroupVersion.WithResource("nodes")
	rv := 0
	nextRV := func(n *v1.Node) { rv++; n.ResourceVersion = strconv.Itoa(rv) }
	// The fake keeps no resourceVersions: this one does, as the API server.
	client.PrependReactor("create", "nodes", func(action k8stesting.Action) (bool, runtime.Object, error) {
		created := action.(k8stesting.CreateAction).GetObject().(*v1.Node).DeepCopy()
		nextRV(created)
		if err := tracker.Create(nodesGVR, created, ""); err != nil {
			return true, nil, err
		}
		// The node lifecycle controller's write right after creation.
		tainted := created.DeepCopy()
		tainted.Spec.Taints = append(tainted.Spec.Taints, v1.Taint{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule})
		nextRV(tainted)
		if err := tracker.Update(nodesGVR, tainted, ""); err != nil {
			return true, nil, err
		}
		return true, created, nil
	})
	client.PrependReactor("update", "nodes", func(action k8stesting.Action) (bool, runtime.Object, error) {
		n := action.(k8stesting.UpdateAction).GetObject().(*v1.Node).DeepCopy()
		stored, err := tracker.Get(nodesGVR, "", n.Name)
		if err != nil {
			return true, nil, err
		}
		if n.ResourceVersion != stored.(*v1.Node).ResourceVersion {
			return true, nil, apierrors.NewConflict(nodesGVR.GroupResource(), n.Name, errors.New("the object has been modified"))
		}
		nextRV(n)
		return true, n, tracker.Update(nodesGVR, n, "")
	})

	m := New(Config{Client: client})
	a := &agentState{id: "S1", hostname: "h1", capacity: podresources.Resources{Scalars: podresources.Scalars{CPUs: 2000, MemMB: 1024000}}}
	if err := m.sync(context.Background(), a); err != nil {
		t.Fatalf("sync: %v", err)
	}
	n, err := client.CoreV1().Nodes().Get(context.Background(), "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || (c.Type == v1.NodeReady && c.Status == v1.ConditionTrue)
	}
	if !ready {
		t.Errorf("Node conditions after one sync %v, want Ready", n.Status.Conditions)
	}
	if cpu := n.Status.Allocatable[v1.ResourceCPU]; cpu.MilliValue() != 2000 {
		t.Errorf("allocatable cpu %s, want 2", cpu.String())
	}
	if len(n.Spec.Taints) != 2 {
		t.Errorf("taints %v: the status write dropped the controller's taint or the broker's", n.Spec.Taints)
	}
	if _, err := client.CoordinationV1().Leases(leaseNamespace).Get(context.Background(), "h1", metav1.GetOptions{}); err != nil {
		t.Errorf("the Node's Lease: %v", err)
	}
}
