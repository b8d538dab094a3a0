package grpcserver

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/k8sm/k8sm/broker/offers"
)

// BenchmarkUpdateEvent is the broker's cost of one agent's change as the
// offer watch carries it: an offer added to (or rescinded from) the cache of
// 1,000 agents, the agent's view published to a watcher, converted to its
// message and encoded, as the WatchOffers stream sends it. A pod launched in
// a burst makes three or four such changes; an allocation after a revive
// one per agent.
//
//	go test -run '^$' -bench UpdateEvent -benchmem ./broker/grpcserver
func BenchmarkUpdateEvent(b *testing.B) {
	const agents = 1000
	cache := offers.New(offers.Config{})
	for i := range agents {
		cache.Add(offer(fmt.Sprintf("o%d", i), fmt.Sprintf("a%d", i), fmt.Sprintf("hollow-%05d", i), 8, 32768))
	}
	w := cache.Watch()
	defer w.Stop()
	ctx := context.Background()
	if _, err := w.Next(ctx); err != nil { // the snapshot
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := fmt.Sprintf("x%d", i)
		if i%2 == 0 {
			cache.Add(offer(id, fmt.Sprintf("a%d", i%agents), fmt.Sprintf("hollow-%05d", i%agents), 1, 1024))
		} else {
			cache.Rescind(fmt.Sprintf("x%d", i-1))
		}
		ev, err := w.Next(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := proto.Marshal(eventToProto(ev)); err != nil {
			b.Fatal(err)
		}
	}
}
