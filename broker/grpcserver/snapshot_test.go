package grpcserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

// TestWatchOffersSnapshotInChunks: a snapshot bigger than the chunk budget
// arrives as consecutive chunks of bounded size, all of one epoch and
// version, more set on all but the last, holding every agent once; deltas
// follow only after the last chunk.
func TestWatchOffersSnapshotInChunks(t *testing.T) {
	e := newEnv(t)
	const agents, budget = 300, 4 << 10
	e.server.SetSnapshotChunkBytes(budget)
	for i := range agents {
		e.cache.Add(offer(fmt.Sprintf("o%d", i), fmt.Sprintf("a%d", i), fmt.Sprintf("node-%03d", i), 2, 1024))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, ev := watch(ctx, t, e)
	version, epoch := ev.GetResourceVersion(), ev.GetSnapshot().GetEpoch()
	if epoch != e.cache.Epoch() || version == 0 {
		t.Fatalf("first chunk of epoch %q version %d, want the cache's epoch %q and its version", epoch, version, e.cache.Epoch())
	}
	seen := map[string]bool{}
	chunks := 0
	for {
		snap := ev.GetSnapshot()
		if snap == nil {
			t.Fatalf("after %d chunks got %v, want the snapshot's next chunk", chunks, ev)
		}
		chunks++
		if snap.GetEpoch() != epoch || ev.GetResourceVersion() != version {
			t.Errorf("chunk %d of epoch %q version %d, want %q %d", chunks, snap.GetEpoch(), ev.GetResourceVersion(), epoch, version)
		}
		if size := proto.Size(ev); size > budget+64 {
			t.Errorf("chunk %d is %d bytes, want about %d at most", chunks, size, budget)
		}
		for _, a := range snap.GetAgents() {
			if seen[a.GetHostname()] {
				t.Errorf("%s in two chunks", a.GetHostname())
			}
			seen[a.GetHostname()] = true
		}
		if !snap.GetMore() {
			break
		}
		var err error
		if ev, err = stream.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != agents || chunks < 2 {
		t.Fatalf("%d agents in %d chunks, want %d in several", len(seen), chunks, agents)
	}
	e.cache.RemoveAgent("a7")
	ev, err := stream.Recv()
	if err != nil || ev.GetRemoved().GetHostname() != "node-007" || ev.GetResourceVersion() <= version {
		t.Errorf("after the snapshot: %v %v, want node-007 removed at a later version", ev, err)
	}
}

// An empty view is one chunk without agents: the watcher is synced.
func TestWatchOffersEmptySnapshot(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, ev := watch(ctx, t, e)
	if snap := ev.GetSnapshot(); snap == nil || snap.GetMore() || len(snap.GetAgents()) != 0 {
		t.Errorf("first message %v, want one empty last chunk", ev)
	}
}
