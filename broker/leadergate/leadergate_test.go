package leadergate

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// TestTwoBrokersOneWriter: two brokers' gates in front of one API server.
// Only the one whose term is current writes; the one whose leadership ended
// writes nothing more, reads go on; a request made in an earlier term is
// refused even when the same broker leads again.
func TestTwoBrokersOneWriter(t *testing.T) {
	var writes atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writes.Add(1)
		}
	}))
	defer api.Close()
	do := func(g *Gate, ctx context.Context, method string) error {
		req, _ := http.NewRequestWithContext(ctx, method, api.URL+"/api/v1/namespaces/default/pods/p/status", nil)
		resp, err := (&http.Client{Transport: g.Wrap(http.DefaultTransport)}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	var a, b Gate
	ctx := context.Background()
	if err := do(&a, ctx, http.MethodPut); !errors.Is(err, ErrNotLeader) {
		t.Errorf("write before leading: %v, want ErrNotLeader", err)
	}
	if err := do(&a, ctx, http.MethodGet); err != nil {
		t.Errorf("read before leading: %v", err)
	}

	aTerm, aLost := context.WithCancel(ctx)
	aCtx := a.Lead(aTerm)
	if err := do(&a, aCtx, http.MethodPatch); err != nil {
		t.Fatalf("write of the leader: %v", err)
	}
	aLost() // A's ZooKeeper connection is suspended; B is elected
	bCtx := b.Lead(ctx)
	if err := do(&a, context.WithoutCancel(aCtx), http.MethodPut); !errors.Is(err, ErrNotLeader) {
		t.Errorf("write of the former leader: %v, want ErrNotLeader", err)
	}
	if err := do(&b, bCtx, http.MethodPut); err != nil {
		t.Errorf("write of the new leader: %v", err)
	}
	// A leads again later: what its first term started stays fenced.
	a.Lead(ctx)
	if err := do(&a, context.WithoutCancel(aCtx), http.MethodDelete); !errors.Is(err, ErrNotLeader) {
		t.Errorf("write of an earlier term: %v, want ErrNotLeader", err)
	}
	if got := writes.Load(); got != 2 {
		t.Errorf("the API server got %d writes, want 2 (one per current leader)", got)
	}
}
