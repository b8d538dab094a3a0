// Package leadergate fences the broker's Kubernetes writes by leadership:
// every client the broker writes with sends its requests through a Gate,
// which lets a write (POST, PUT, PATCH, DELETE) pass only while this
// process leads, and only if the request belongs to the current term.
//
// Cancelling the leader's context stops the goroutines that write, but not
// at once: a request already being built, a retry with backoff, a context
// detached for cleanup (context.WithoutCancel) would still reach the API
// server after another broker was elected. The gate checks at the moment a
// request is sent, so a broker that lost leadership writes nothing more.
package leadergate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// ErrNotLeader is returned for a write of a broker that does not lead, or of
// an earlier term.
var ErrNotLeader = errors.New("this broker does not lead: Kubernetes writes are fenced")

// Gate lets writes through while a term of leadership lasts.
type Gate struct {
	mu    sync.Mutex
	epoch uint64
	term  context.Context // nil while not leading
}

type epochKey struct{}

// Lead starts a term of leadership that lasts as long as ctx, and returns
// ctx stamped with the term's epoch: requests made with it (or a context
// derived from it) are refused once another term began, even if it is this
// process's again.
func (g *Gate) Lead(ctx context.Context) context.Context {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.epoch++
	g.term = ctx
	return context.WithValue(ctx, epochKey{}, g.epoch)
}

// Leading reports whether a term is current (its context not done).
func (g *Gate) Leading() bool {
	_, err := g.check(context.Background())
	return err == nil
}

// check returns the current epoch, or why a write made with ctx must not
// be sent.
func (g *Gate) check(ctx context.Context) (uint64, error) {
	g.mu.Lock()
	term, epoch := g.term, g.epoch
	g.mu.Unlock()
	if term == nil || term.Err() != nil {
		return 0, ErrNotLeader
	}
	if e, ok := ctx.Value(epochKey{}).(uint64); ok && e != epoch {
		return 0, fmt.Errorf("%w: the request belongs to leadership term %d, the current one is %d", ErrNotLeader, e, epoch)
	}
	return epoch, nil
}

// Wrap returns rt behind the gate (for rest.Config.Wrap).
func (g *Gate) Wrap(rt http.RoundTripper) http.RoundTripper { return &transport{g: g, rt: rt} }

type transport struct {
	g  *Gate
	rt http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return t.rt.RoundTrip(req)
	}
	if _, err := t.g.check(req.Context()); err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	return t.rt.RoundTrip(req)
}
