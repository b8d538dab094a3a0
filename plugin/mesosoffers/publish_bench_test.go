package mesosoffers

import (
	"fmt"
	"testing"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// BenchmarkMirrorNewHosts is the offer watch applying the first offers of
// agents joining one by one after the snapshot (a cluster starting, or a
// broker whose snapshot held only the agents offered then): one Updated
// event per new host, with or without Filter reading each one as it joins.
// Each op is the whole arrival of agents hosts, so ns/op grows with agents
// as the work per new host does.
//
//	go test -run '^$' -bench MirrorNewHosts -benchtime 5x ./plugin/mesosoffers
func BenchmarkMirrorNewHosts(b *testing.B) {
	for _, agents := range []int{1000, 5000, 10000} {
		for _, read := range []bool{false, true} {
			b.Run(fmt.Sprintf("agents=%d/read=%v", agents, read), func(b *testing.B) {
				benchMirrorNewHosts(b, agents, read)
			})
		}
	}
}

// benchMirrorNewHosts: with read, each new host is read (get, Filter's
// read) right after it joined, before the next one joins.
func benchMirrorNewHosts(b *testing.B, agents int, read bool) {
	events := make([]*brokerv1.WatchOffersResponse, agents)
	for i := range events {
		a := benchAgentProto(fmt.Sprintf("agent-%05d", i), 1)
		events[i] = &brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: a}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		m := newMirror(nil)
		m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Snapshot{Snapshot: &brokerv1.Snapshot{Epoch: "e1"}}})
		for _, ev := range events {
			m.apply(ev)
			if read && m.get(ev.GetUpdated().GetHostname()) == nil {
				b.Fatalf("%s joined but is not in the view", ev.GetUpdated().GetHostname())
			}
		}
		if m.get("agent-00000") == nil {
			b.Fatal("the first agent is not in the view")
		}
	}
}
