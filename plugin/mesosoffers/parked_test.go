package mesosoffers

import (
	"context"
	"maps"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// Parked pods are activated when a changed agent holds what they need, once,
// whatever shape they were parked with last; unparked pods never are.
func TestParkedActivatesPodsThatFit(t *testing.T) {
	var got []map[string]*v1.Pod
	q := newParked(func(pods map[string]*v1.Pod) { got = append(got, pods) })
	small, big := mkPod("100m", "64Mi"), mkPod("100", "64Mi")
	small.UID, big.UID = "small", "big"
	grown, gone := mkPod("100", "64Mi"), mkPod("100m", "64Mi")
	grown.UID, gone.UID = "grown", "gone"
	q.park(small, mustDemand(t, small))
	q.park(big, mustDemand(t, big))
	q.park(grown, mustDemand(t, grown))
	q.park(grown, mustDemand(t, small)) // parked again, now needing less
	q.park(gone, mustDemand(t, gone))
	q.unpark(gone.UID)
	if n := q.count(); n != 3 {
		t.Fatalf("%d pods parked, want 3 (small, big, grown)", n)
	}

	agentWith := func(host string, cpus float64) *agent {
		r := podresources.Resources{Scalars: podresources.Scalars{CPUs: podresources.Milli(cpus * 1000), MemMB: 32768 * 1000, DiskMB: 100000 * 1000}}
		return agentFromProto(&brokerv1.Agent{AgentId: "id-" + host, Hostname: host, ResourceVersion: 1,
			Available: brokerapi.ByRoleToProto(podresources.ByRole{"*": r}), Capacity: brokerapi.ByRoleToProto(podresources.ByRole{"*": r})})
	}
	ctx := context.Background()
	q.offersChanged(ctx, []*agent{agentWith("a", 0.01), agentWith("b", 8)})
	q.offersChanged(ctx, []*agent{agentWith("b", 8)})
	q.offersChanged(ctx, []*agent{agentWith("c", 128)})

	var rounds [][]string
	for _, pods := range got {
		rounds = append(rounds, slices.Sorted(maps.Keys(pods)))
	}
	want := [][]string{{"grown", "small"}, {"big"}}
	if !slices.EqualFunc(rounds, want, slices.Equal) {
		t.Errorf("activated %v, want %v", rounds, want)
	}
	if n := q.count(); n != 0 {
		t.Errorf("%d pods still parked after all were activated", n)
	}
}

// Demands that differ in anything Fit reads have different shape keys.
func TestShapeKeyTellsShapesApart(t *testing.T) {
	base := podresources.Demand{Scalars: podresources.Scalars{CPUs: 100, MemMB: 64000}}
	shapes := []podresources.Demand{base}
	for _, change := range []func(*podresources.Demand){
		func(d *podresources.Demand) { d.CPUs = 1000 },
		func(d *podresources.Demand) { d.MemMB = 100 },
		func(d *podresources.Demand) { d.DiskMB = 100 },
		func(d *podresources.Demand) { d.GPUs = 100 },
		func(d *podresources.Demand) { d.HostPorts = []uint64{31000} },
		func(d *podresources.Demand) { d.HostPorts = []uint64{3100, 0} },
		func(d *podresources.Demand) { d.HostPorts = []uint64{31, 0} },
		func(d *podresources.Demand) { d.WildcardPorts = 1 },
		func(d *podresources.Demand) { d.Roles = []string{"web"} },
		func(d *podresources.Demand) { d.Roles = []string{"web", "*"} },
		func(d *podresources.Demand) { d.Roles = []string{"web/*"} },
		func(d *podresources.Demand) { d.Roles = []string{""} },
	} {
		d := base
		change(&d)
		shapes = append(shapes, d)
	}
	seen := map[string]int{}
	for i, d := range shapes {
		k := shapeKey(d)
		if j, ok := seen[k]; ok {
			t.Errorf("demands %d (%v) and %d (%v) share the key %q", j, shapes[j], i, d, k)
		}
		seen[k] = i
	}
	same := base
	same.Roles = []string{}
	if shapeKey(same) != shapeKey(base) {
		t.Errorf("no roles and an empty list of roles have different keys: %q, %q", shapeKey(same), shapeKey(base))
	}
}
