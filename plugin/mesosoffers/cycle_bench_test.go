package mesosoffers

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// grantingBroker answers every Reserve at once with a grant, in memory: the
// benchmark measures the plugin's side of Reserve, not the network.
type grantingBroker struct {
	brokerv1.BrokerClient
	mu   sync.Mutex
	sent int
}

func (g *grantingBroker) Reserve(_ context.Context, req *brokerv1.ReserveRequest, _ ...grpc.CallOption) (*brokerv1.ReserveResponse, error) {
	g.mu.Lock()
	g.sent++
	g.mu.Unlock()
	return &brokerv1.ReserveResponse{Reservation: &brokerv1.Reservation{Id: "r-" + req.GetPod().GetUid()}}, nil
}

// BenchmarkReserve is MesosOffers' Reserve alone, as the serial scheduling
// cycle runs it in a burst at 1,000 agents (half of them offered, the
// bench's pod): PreFilter and Filter pick the node untimed, then Reserve is
// timed (wall and this thread's CPU), then the broker's view shows the
// claim and the offer churn of newBenchCluster follows, untimed. The
// broker's answer comes from memory on the RPC's own goroutine.
//
//	go test -run '^$' -bench 'Reserve$' -benchtime 2000x ./plugin/mesosoffers
func BenchmarkReserve(b *testing.B) {
	c := newBenchCluster(b, 1000)
	c.pl.client = &grantingBroker{}
	ctx := context.Background()
	var wall, cpu time.Duration
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		pod := benchPod(i, 0)
		state := framework.NewCycleState()
		res, st := c.pl.PreFilter(ctx, state, pod, c.nodes)
		if !st.IsSuccess() {
			b.Fatalf("PreFilter: %v", st)
		}
		chosen := ""
		for n := range res.NodeNames {
			if c.pl.Filter(ctx, state, pod, c.byName[n]) == nil {
				chosen = n
				break
			}
		}
		if chosen == "" {
			b.Fatalf("pod %d found no node", i)
		}
		c0, t0 := threadCPU(b), time.Now()
		st = c.pl.Reserve(ctx, state, pod, chosen)
		t1, c1 := time.Now(), threadCPU(b)
		if !st.IsSuccess() {
			b.Fatalf("Reserve on %s: %v", chosen, st)
		}
		wall += t1.Sub(t0)
		cpu += c1 - c0
		s, err := state.Read(reservationKey)
		if err != nil {
			b.Fatal(err)
		}
		bc := s.(*reservationState).bc
		if _, err := bc.await(ctx); err != nil {
			b.Fatalf("broker's answer: %v", err)
		}
		c.brokerGrants(bc.claim)
		c.pl.priorities.forgetAssumed(pod.UID)
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(per(wall), "reserve-µs/op")
	b.ReportMetric(per(cpu), "reserve-cpu-µs/op")
}
