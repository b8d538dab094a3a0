package offers

import (
	"reflect"
	"testing"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// A pod without requests (BestEffort) must become a task with resources:
// Mesos refuses a task without any, and before the default charge such a pod
// stayed Pending for ever ("offers of agent … do not hold the batch").
func TestPodWithoutRequestsIsChargedTheDefault(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 512)))

	r, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: podresources.Demand{}})
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if want := res(0.25, 64); !reflect.DeepEqual(r.Claim, want) {
		t.Errorf("claim %v, want the default %v", r.Claim, want)
	}
	// Only what the pod did not request is defaulted.
	r2, err := c.Reserve(ReserveRequest{Pod: podRef(2), NodeName: "node-1", Demand: demand(0.5, 0)})
	if err != nil {
		t.Fatalf("Reserve cpu-only: %v", err)
	}
	if want := res(0.5, 64); !reflect.DeepEqual(r2.Claim, want) {
		t.Errorf("cpu-only claim %v, want %v", r2.Claim, want)
	}
	l, err := c.Take(r.ID, r2.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Failed) != 0 || len(l.Tasks) != 2 {
		t.Fatalf("take: failed %v, %d tasks; want both launched", l.Failed, len(l.Tasks))
	}
	if got := podresources.FromMesos(l.Tasks[0].Resources)["*"]; !reflect.DeepEqual(got, res(0.25, 64)) {
		t.Errorf("task resources %v, want 0.25 cpus 64 MB", got)
	}
	checkInvariants(t, c)
}

func TestPodDefaultsAreConfigurable(t *testing.T) {
	c, _ := newTestCache(Config{PodDefaults: podresources.Scalars{CPUs: 100, MemMB: 32000}})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 512)))
	r, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1"})
	if err != nil {
		t.Fatal(err)
	}
	if want := res(0.1, 32); !reflect.DeepEqual(r.Claim, want) {
		t.Errorf("claim %v, want %v", r.Claim, want)
	}
}
