package grpcserver

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/broker/offers"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// BenchmarkSnapshotSend measures sending one WatchOffers snapshot of 10,000
// agents as one message (as before chunking) and in 256 KiB chunks (as
// now): the largest message (max-msg-KiB), how many (msgs), and the most heap
// the messages held while one was sent (held-MiB, on top of the cache and
// its snapshot). Run with -benchtime=1x:
//
//	go test -run '^$' -bench SnapshotSend -benchtime=1x ./broker/grpcserver
func BenchmarkSnapshotSend(b *testing.B) {
	const agents = 10000
	cache := offers.New(offers.Config{})
	for i := range agents {
		o := offer(fmt.Sprintf("o%d", i), fmt.Sprintf("a%d", i), fmt.Sprintf("hollow-%05d", i), 8, 32768)
		cache.Add(o)
	}
	for _, tc := range []struct {
		name  string
		bytes int
	}{{"one-message", math.MaxInt}, {"chunked-256KiB", 256 << 10}} {
		b.Run(tc.name, func(b *testing.B) {
			var held uint64
			var maxMsg, msgs int
			for i := 0; i < b.N; i++ {
				w := cache.Watch()
				ev, err := w.Next(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				before := liveHeapBytes()
				held, maxMsg, msgs = 0, 0, 0
				send := func(m *brokerv1.WatchOffersResponse) error {
					// What a stream holds while it sends m: m and the buffer
					// gRPC marshals it into.
					wire, err := proto.Marshal(m)
					if err != nil {
						return err
					}
					held = max(held, liveHeapBytes()-before)
					maxMsg, msgs = max(maxMsg, len(wire)), msgs+1
					runtime.KeepAlive(wire)
					runtime.KeepAlive(m)
					return nil
				}
				if err := sendSnapshot(send, ev, cache.Epoch(), tc.bytes); err != nil {
					b.Fatal(err)
				}
				// The server holds the event until the next one.
				runtime.KeepAlive(ev)
				w.Stop()
			}
			b.ReportMetric(float64(held)/(1<<20), "held-MiB")
			b.ReportMetric(float64(maxMsg)/(1<<10), "max-msg-KiB")
			b.ReportMetric(float64(msgs), "msgs")
		})
	}
}

func liveHeapBytes() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
