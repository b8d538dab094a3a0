package mesosoffers

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
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
		chosen := c.firstFit(ctx, b, state, pod, res.NodeNames)
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

// BenchmarkCycleDuringWatch is MesosOffers' PreFilter and Reserve in the
// serial cycle while the offer watch applies a change every 200 µs, as in
// a burst: 100 agents that are no Nodes of the benchmark go out (an ACCEPT
// took their offers) and come back in turn, and 2,000 pods PreEnqueue held
// back (a shape no agent holds) are parked. It reports the wall time of
// each, what the scheduler's extension-point metric measures: on two cores
// the cycle waits for the watch's hold of the locks it shares with it.
//
//	go test -run '^$' -bench CycleDuringWatch -benchtime 3000x ./plugin/mesosoffers
func BenchmarkCycleDuringWatch(b *testing.B) {
	c := newBenchCluster(b, 1000)
	c.pl.client = &grantingBroker{}
	ctx := context.Background()
	for i := range 2000 {
		p := benchPod(1_000_000+i, 0)
		c.pl.parked.park(p, podresources.Demand{Scalars: podresources.Scalars{CPUs: 100000}})
	}
	var full, empty []*brokerv1.Agent
	for i := range 100 {
		a := benchAgentProto(fmt.Sprintf("watch-%03d", i), 1)
		full = append(full, a)
		empty = append(empty, &brokerv1.Agent{AgentId: a.AgentId, Hostname: a.Hostname, Capacity: a.Capacity, ResourceVersion: 1, Attributes: a.Attributes})
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
			a := full[i%len(full)]
			if (i/len(full))%2 == 1 {
				a = empty[i%len(empty)]
			}
			a.ResourceVersion++
			ev := &brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: a}}
			if agents := c.pl.mirror.apply(ev); len(agents) > 0 {
				c.pl.parked.offersChanged(ctx, agents)
			}
		}
	}()
	var pre, reserve time.Duration
	b.ResetTimer()
	for i := range b.N {
		pod := benchPod(i, 0)
		state := framework.NewCycleState()
		t0 := time.Now()
		res, st := c.pl.PreFilter(ctx, state, pod, c.nodes)
		pre += time.Since(t0)
		if !st.IsSuccess() {
			b.Fatalf("PreFilter: %v", st)
		}
		chosen := c.firstFit(ctx, b, state, pod, res.NodeNames)
		t1 := time.Now()
		st = c.pl.Reserve(ctx, state, pod, chosen)
		reserve += time.Since(t1)
		if !st.IsSuccess() {
			b.Fatalf("Reserve on %s: %v", chosen, st)
		}
		s, _ := state.Read(reservationKey)
		bc := s.(*reservationState).bc
		if _, err := bc.await(ctx); err != nil {
			b.Fatalf("broker's answer: %v", err)
		}
		c.brokerGrants(bc.claim)
		c.pl.priorities.forgetAssumed(pod.UID)
	}
	b.StopTimer()
	close(stop)
	<-done
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(per(pre), "prefilter-µs/op")
	b.ReportMetric(per(reserve), "reserve-µs/op")
}

// firstFit is the first of names whose Filter passes for pod, as the
// scheduler's cycle would pick among PreFilter's nodes.
func (c *benchCluster) firstFit(ctx context.Context, b *testing.B, state fwk.CycleState, pod *v1.Pod, names sets.Set[string]) string {
	b.Helper()
	for n := range names {
		if ni := c.byName[n]; ni != nil && c.pl.Filter(ctx, state, pod, ni) == nil {
			return n
		}
	}
	b.Fatalf("pod %s found no node", pod.Name)
	return ""
}
