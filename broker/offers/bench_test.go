package offers

import (
	"fmt"
	"runtime"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/apimachinery/pkg/types"

	"github.com/k8sm/k8sm/pkg/podresources"
)

const benchAgents = 10000

// benchCache holds benchAgents agents, each with one offer of a typical
// agent's size (two roles would double it; one is the common case).
func benchCache(b *testing.B) *Cache {
	c := New(Config{Executor: res(0.1, 32)})
	offers := make([]mesos.Offer, 0, benchAgents)
	for i := range benchAgents {
		offers = append(offers, mkOffer(fmt.Sprintf("o%d", i), fmt.Sprintf("a%d", i), fmt.Sprintf("node-%05d", i), "*",
			res(32, 128*1024, podresources.Range{Begin: 31000, End: 32000})))
	}
	c.Add(offers...)
	return c
}

// BenchmarkReserve measures one Reserve plus one Unreserve (so the cache stays
// in a steady state) on a cache of 10,000 agents, and reports the cache's
// heap size.
func BenchmarkReserve(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c := benchCache(b)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc - before.HeapAlloc)

	d := podresources.Demand{Scalars: res(0.5, 512).Scalars, HostPorts: []uint64{31080}, WildcardPorts: 2}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r, err := c.Reserve(ReserveRequest{
			Pod:      PodRef{UID: types.UID(fmt.Sprint(i)), Namespace: "default", Name: "p"},
			NodeName: fmt.Sprintf("node-%05d", i%benchAgents),
			Demand:   d,
		})
		if err != nil {
			b.Fatal(err)
		}
		c.Unreserve(r.ID, "")
	}
	b.StopTimer()
	// Reported last: ResetTimer drops metrics reported before it.
	b.ReportMetric(heap/(1<<20), "cache-MiB")
	b.ReportMetric(heap/benchAgents, "heap-B/agent")
	runtime.KeepAlive(c)
}

// BenchmarkReserveParallel is BenchmarkReserve from GOMAXPROCS goroutines
// with a watcher attached, i.e. with contention on the cache's lock.
func BenchmarkReserveParallel(b *testing.B) {
	c := benchCache(b)
	w := c.Watch()
	defer w.Stop()
	d := demand(0.5, 512)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r, err := c.Reserve(ReserveRequest{
				Pod:      PodRef{UID: types.UID(fmt.Sprintf("%p-%d", pb, i))},
				NodeName: fmt.Sprintf("node-%05d", i%benchAgents),
				Demand:   d,
			})
			if err != nil {
				b.Fatal(err)
			}
			c.Unreserve(r.ID, "")
		}
	})
}

// BenchmarkSnapshot measures what a new watcher (or a resync) costs at 10,000 agents.
func BenchmarkSnapshot(b *testing.B) {
	c := benchCache(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if s, _ := c.Snapshot(); len(s) != benchAgents {
			b.Fatalf("snapshot has %d agents", len(s))
		}
	}
}
