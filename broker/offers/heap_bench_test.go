package offers

import (
	"context"
	"runtime"
	"testing"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/k8sm/k8sm/broker/offers/offerstest"
)

// The benchmarks in this file measure memory, not time: what the broker keeps
// live per agent at 10,000 agents, and what one OFFERS event of 10,000 offers
// costs on its way into the cache. Run them with -benchtime=1x; the figures
// are the metrics, ns/op is incidental.
//
//	go test -run '^$' -bench 'Heap' -benchtime=1x ./broker/offers

// offersEvent is the protobuf OFFERS event of n offerstest.SimOffers, as read from the
// subscription's RecordIO stream.
func offersEvent(b *testing.B, n int) []byte {
	ev := scheduler.Event{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{Offers: offerstest.SimOffers(n)}}
	wire, err := ev.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	return wire
}

func decodeEvent(b *testing.B, wire []byte) *scheduler.Event {
	ev := new(scheduler.Event)
	if err := ev.Unmarshal(wire); err != nil {
		b.Fatal(err)
	}
	return ev
}

// BenchmarkCacheHeap reports what the cache keeps live for benchAgents
// agents of one offer each, once the OFFERS event they came in is garbage:
// heap-B/agent and cache-MiB.
func BenchmarkCacheHeap(b *testing.B) {
	wire := offersEvent(b, benchAgents)
	var live uint64
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		before := offerstest.LiveHeap()
		ev := decodeEvent(b, wire)
		c := New(Config{Executor: res(0.1, 32)})
		c.Add(ev.GetOffers().Offers...)
		ev = nil
		live = offerstest.LiveHeap() - before
		runtime.KeepAlive(c)
	}
	b.ReportMetric(float64(live)/benchAgents, "heap-B/agent")
	b.ReportMetric(float64(live)/(1<<20), "cache-MiB")
}

// BenchmarkOffersEventHeap reports the transient cost of one OFFERS event of
// benchAgents offers: the size on the wire (wire-MiB), the decoded event while
// the cache takes it in (event-MiB, live on top of the cache until the event
// is dropped), and everything decoding and Add allocate (alloc-MiB).
func BenchmarkOffersEventHeap(b *testing.B) {
	wire := offersEvent(b, benchAgents)
	var decoded, alloc uint64
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		c := New(Config{Executor: res(0.1, 32)})
		before := offerstest.LiveHeap()
		var ms0, ms1 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		ev := decodeEvent(b, wire)
		decoded = offerstest.LiveHeap() - before
		c.Add(ev.GetOffers().Offers...)
		runtime.ReadMemStats(&ms1)
		alloc = ms1.TotalAlloc - ms0.TotalAlloc
		runtime.KeepAlive(ev)
		runtime.KeepAlive(c)
	}
	b.ReportMetric(float64(len(wire))/(1<<20), "wire-MiB")
	b.ReportMetric(float64(decoded)/(1<<20), "event-MiB")
	b.ReportMetric(float64(alloc)/(1<<20), "alloc-MiB")
}

// BenchmarkSnapshotHeap reports what one watcher's snapshot event of
// benchAgents agents holds while it is sent (snapshot-MiB, on top of the
// cache; the gRPC server converts it to messages a chunk at a time).
func BenchmarkSnapshotHeap(b *testing.B) {
	c := New(Config{Executor: res(0.1, 32)})
	c.Add(offerstest.SimOffers(benchAgents)...)
	var live uint64
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		w := c.Watch()
		before := offerstest.LiveHeap()
		ev, err := w.Next(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		live = offerstest.LiveHeap() - before
		runtime.KeepAlive(ev)
		w.Stop()
	}
	b.ReportMetric(float64(live)/benchAgents, "B/agent")
	b.ReportMetric(float64(live)/(1<<20), "snapshot-MiB")
}

// BenchmarkAdd is the time to take one OFFERS event of benchAgents offers
// into an empty cache, decoding excluded.
func BenchmarkAdd(b *testing.B) {
	wire := offersEvent(b, benchAgents)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ev := decodeEvent(b, wire)
		c := New(Config{Executor: res(0.1, 32)})
		b.StartTimer()
		c.Add(ev.GetOffers().Offers...)
	}
}
