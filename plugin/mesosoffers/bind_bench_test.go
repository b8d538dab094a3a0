package mesosoffers

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// BenchmarkBindPipeline runs MesosOffers' Reserve and Bind as the scheduler
// does in a burst — Reserve in the serial cycle, each pod's Bind on a
// goroutine of its own at once — against the real broker server, offer
// cache and launcher over loopback gRPC; Mesos (the ACCEPT) and the API
// server (the Binding) are in-memory fakes. 200 pods go to 1,000 agents:
// "spread", each on an agent of its own, one every `gap`, as the bench's
// burst spreads them; "pairs", two on each agent `within` apart (a cycle's
// time), a pair every `gap`, as on a cluster with fewer agents than pods.
// It reports Bind's mean and p99, the k8sm part of Bind without the
// machine's other processes; the binds that failed (the scheduler tries
// their pods again later); and the second pods of pairs whose Reserve the
// plugin's view already refused (the scheduler would have placed them on
// another agent). cpu-µs/pod is the process's CPU (user and system, every
// thread: plugin, broker, the fakes, the runtime) per pod over each round
// and the 20 ms after it, in which the watch shows the mirror the launches'
// takes: what the scheduler and the broker spend per pod, on a machine
// where other processes would stretch the wall time (the re-offering of
// every agent between rounds is left out).
func BenchmarkBindPipeline(b *testing.B) {
	const agents, pods = 1000, 200
	for _, c := range []struct {
		perAgent    int
		within, gap time.Duration
	}{
		{1, 0, 0}, {1, 0, 10 * time.Millisecond},
		{2, 0, 10 * time.Millisecond}, {2, time.Millisecond, 10 * time.Millisecond}, {2, 3 * time.Millisecond, 10 * time.Millisecond},
	} {
		name := fmt.Sprintf("spread/gap-%s", c.gap)
		if c.perAgent == 2 {
			name = fmt.Sprintf("pairs/within-%s", c.within)
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b)
			bindingsOf(e.handle, nil)
			go func() {
				// The pods whose bind failed are parked, and activated as
				// offers come: nobody schedules them here.
				for range e.handle.activated {
				}
			}()
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
			var failed, moved atomic.Int64
			rounds := 0
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				offerAll()
				b.StartTimer()
				cpu0 := processCPU(b)
				rounds++
				var mu sync.Mutex
				var wg sync.WaitGroup
				for i := range pods {
					pod := mkPod("10m", "16Mi")
					node := fmt.Sprintf("n%d", i/c.perAgent*c.perAgent*agents/pods)
					state := framework.NewCycleState()
					if _, st := e.pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
						b.Fatalf("PreFilter: %v", st)
					}
					if st := e.pl.Reserve(context.Background(), state, pod, node); !st.IsSuccess() {
						moved.Add(1)
					} else {
						wg.Add(1)
						go func() {
							defer wg.Done()
							t0 := time.Now()
							st := e.pl.Bind(context.Background(), state, pod, node)
							d := time.Since(t0)
							mu.Lock()
							all = append(all, d)
							mu.Unlock()
							if !st.IsSuccess() {
								failed.Add(1)
								e.pl.Unreserve(context.Background(), state, pod, node)
							}
						}()
					}
					switch {
					case i%c.perAgent != c.perAgent-1:
						time.Sleep(c.within)
					case c.gap > 0:
						time.Sleep(c.gap)
					}
				}
				wg.Wait()
				b.StopTimer()
				time.Sleep(20 * time.Millisecond)
				cpu += processCPU(b) - cpu0
				b.StartTimer()
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			var sum time.Duration
			for _, d := range all {
				sum += d
			}
			b.ReportMetric(float64(sum.Microseconds())/1000/float64(len(all)), "bind-mean-ms")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "bind-p99-ms")
			b.ReportMetric(float64(failed.Load())/float64(rounds), "failed-binds/op")
			b.ReportMetric(float64(moved.Load())/float64(rounds), "refused-reserves/op")
			b.ReportMetric(float64(cpu.Nanoseconds())/1000/float64(rounds*pods), "cpu-µs/pod")
		})
	}
}

// processCPU is the CPU time (user and system) every thread of the process
// has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
