package offers

import (
	"testing"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// TestAgentHostnameAndCapacityMatchTheView: the accessors the status path
// and the node mirror use answer what the agent's view says.
func TestAgentHostnameAndCapacityMatchTheView(t *testing.T) {
	c, _ := newTestCache(Config{Executor: res(0.1, 32)})
	c.Add(
		mkOffer("o1", "a1", "node-1", "*", res(2, 1024, podresources.Range{Begin: 31000, End: 31009})),
		mkOffer("o2", "a1", "node-1", "web", res(1, 512, podresources.Range{Begin: 32000, End: 32000})),
	)
	if _, err := c.Reserve(ReserveRequest{Pod: PodRef{UID: "p1"}, NodeName: "node-1", Demand: demand(0.5, 128)}); err != nil {
		t.Fatal(err)
	}
	v, ok := c.Agent("a1")
	if !ok {
		t.Fatal("agent a1 has no view")
	}
	host, ok := c.AgentHostname("a1")
	if !ok || host != v.Hostname {
		t.Errorf("AgentHostname = %q, %v; the view says %q", host, ok, v.Hostname)
	}
	capacity, ok := c.AgentCapacity("a1")
	if want := v.Capacity.Total(); !ok || capacity.Scalars != want.Scalars || capacity.Ports.String() != want.Ports.String() {
		t.Errorf("AgentCapacity = %v, %v; the view's capacity totals %v", capacity, ok, want)
	}
	if _, ok := c.AgentHostname("nope"); ok {
		t.Error("AgentHostname of an unknown agent answered")
	}
	if _, ok := c.AgentCapacity("nope"); ok {
		t.Error("AgentCapacity of an unknown agent answered")
	}
}
