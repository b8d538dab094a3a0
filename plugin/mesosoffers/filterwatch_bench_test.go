package mesosoffers

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"k8s.io/kubernetes/pkg/scheduler/framework"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// BenchmarkFilterDuringWatch is Filter as the scheduler runs it, from
// parallel workers over the nodes PreFilter named, while the offer watch
// applies a change every 200 µs (a burst's reservations, ACCEPTs and
// offers coming back). ns/op is one Filter call.
//
//	go test -run '^$' -bench FilterDuringWatch -cpu 2 ./plugin/mesosoffers
func BenchmarkFilterDuringWatch(b *testing.B) {
	c := newBenchCluster(b, 1000)
	ctx := context.Background()
	pod := benchPod(1, 0)
	state := framework.NewCycleState()
	res, st := c.pl.PreFilter(ctx, state, pod, c.nodes)
	if !st.IsSuccess() || res.AllNodes() {
		b.Fatalf("PreFilter: %v, %v", st, res)
	}
	var nodes []string
	for n := range res.NodeNames {
		nodes = append(nodes, n)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			a := c.view[nodes[i%len(nodes)]]
			a.ResourceVersion++
			c.pl.mirror.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: a}})
		}
	}()
	b.SetParallelism(8) // 16 workers on 2 cores, as the scheduler's parallelism
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			ni := c.byName[nodes[r.IntN(len(nodes))]]
			_ = c.pl.Filter(ctx, state, pod, ni)
		}
	})
	b.StopTimer()
	close(stop)
	<-done
}
