package mesosoffers

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// BenchmarkBindPipeline runs MesosOffers' Reserve and Bind as the scheduler
// does in a burst — Reserve in the serial cycle every `gap`, each pod's
// Bind on a goroutine of its own at once — against the real broker server,
// offer cache and launcher over loopback gRPC; Mesos (the ACCEPT) and the
// API server (the Binding) are in-memory fakes. Each pod goes to another
// agent, as the bench's burst spreads them. It reports Bind's mean and p99:
// the k8sm part of Bind without the machine's other processes.
func BenchmarkBindPipeline(b *testing.B) {
	const agents, pods = 1000, 200
	for _, gap := range []time.Duration{0, 10 * time.Millisecond} {
		b.Run(fmt.Sprintf("gap-%s", gap), func(b *testing.B) {
			e := newEnv(b)
			bindingsOf(e.handle, nil)
			demand := mustDemand(b, mkPod("10m", "16Mi"))
			offerAll := func() {
				for i := range agents {
					e.broker.cache.Add(mkOffer(fmt.Sprintf("a%d", i), fmt.Sprintf("n%d", i), res(8, 32768)))
				}
				e.waitFor(b, "every agent's offer in the mirror", func() bool {
					for i := range agents {
						if a := e.pl.mirror.get(fmt.Sprintf("n%d", i)); a == nil || !a.holds(demand) {
							return false
						}
					}
					return true
				})
			}
			var all []time.Duration
			for b.Loop() {
				b.StopTimer()
				offerAll()
				b.StartTimer()
				durs := make([]time.Duration, pods)
				var wg sync.WaitGroup
				for i := range pods {
					pod := mkPod("10m", "16Mi")
					node := fmt.Sprintf("n%d", i*agents/pods)
					state := framework.NewCycleState()
					if _, st := e.pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
						b.Fatalf("PreFilter: %v", st)
					}
					if st := e.pl.Reserve(context.Background(), state, pod, node); !st.IsSuccess() {
						b.Fatalf("Reserve: %v", st)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						t0 := time.Now()
						if st := e.pl.Bind(context.Background(), state, pod, node); !st.IsSuccess() {
							b.Errorf("Bind: %v", st)
						}
						durs[i] = time.Since(t0)
					}()
					if gap > 0 {
						time.Sleep(gap)
					}
				}
				wg.Wait()
				all = append(all, durs...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			var sum time.Duration
			for _, d := range all {
				sum += d
			}
			b.ReportMetric(float64(sum.Microseconds())/1000/float64(len(all)), "bind-mean-ms")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "bind-p99-ms")
		})
	}
}
