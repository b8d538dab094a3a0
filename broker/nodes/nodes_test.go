package nodes

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
