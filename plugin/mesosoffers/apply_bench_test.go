package mesosoffers

import (
	"context"
	"fmt"
	"testing"

	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// BenchmarkApplyUpdate is what the scheduler pays for one agent's change in
// the offer watch (a reservation, an ACCEPT taking the offers, offers coming
// back: three or four per pod launched, and a whole allocation's worth after
// a revive or a decline): the update decoded into the mirror, the demand
// shapes of the index moved, and the parked pods checked against it. 1,000
// agents, one demand shape indexed (a burst's), 20 pods parked, or 2,000
// (a burst's pods that PreEnqueue holds back while no offer holds them:
// the parked set's lock is the one PreEnqueue, PreFilter and Reserve take).
//
//	go test -run '^$' -bench ApplyUpdate -benchmem ./plugin/mesosoffers
func BenchmarkApplyUpdate(b *testing.B) {
	for _, parked := range []int{20, 2000} {
		b.Run(fmt.Sprintf("parked=%d", parked), func(b *testing.B) { benchApplyUpdate(b, parked) })
	}
}

func benchApplyUpdate(b *testing.B, parked int) {
	c := newBenchCluster(b, 1000)
	pl := c.pl
	d, err := podresources.FromPod(benchPod(0, 0))
	if err != nil {
		b.Fatal(err)
	}
	d = d.WithDefaults(podresources.DefaultPodScalars)
	pl.mirror.fitting(d)
	for i := range parked {
		p := benchPod(100000+i, 0)
		pl.parked.park(p, podresources.Demand{Scalars: podresources.Scalars{CPUs: 100000}})
	}
	ctx := context.Background()
	hosts := make([]string, 0, len(c.view))
	for h := range c.view {
		hosts = append(hosts, h)
	}
	full := make([]*brokerv1.Agent, len(hosts))
	empty := make([]*brokerv1.Agent, len(hosts))
	for i, h := range hosts {
		full[i] = benchAgentProto(h, 2)
		empty[i] = &brokerv1.Agent{AgentId: "id-" + h, Hostname: h, Capacity: full[i].Capacity, ResourceVersion: 3, Attributes: full[i].Attributes}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		a := full[i%len(full)]
		if (i/len(full))%2 == 1 {
			a = empty[i%len(empty)]
		}
		ev := &brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: a}}
		if agents := pl.mirror.apply(ev); len(agents) > 0 {
			pl.parked.offersChanged(ctx, agents)
		}
	}
}
