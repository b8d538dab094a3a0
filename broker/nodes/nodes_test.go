package nodes

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"

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
