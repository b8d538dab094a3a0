package mesos_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
)

// TestOverlappingCallsReuseConnections: the broker's calls overlap (an
// ACKNOWLEDGE per status from several workers, an ACCEPT per agent, the
// DECLINEs), and they must go over connections the client keeps, not over a
// new connection per call beyond the second (over https, a TLS handshake on
// both sides for each).
func TestOverlappingCallsReuseConnections(t *testing.T) {
	ctx := testCtx(t)
	fm := &fakeMaster{heartbeat: 10, callSeen: make(chan string, 1000)}
	const inFlight = 8
	// The master answers a round's calls only once all of them arrived,
	// so that they really overlap.
	var mu sync.Mutex
	waiting, release := 0, make(chan struct{})
	barrier := func() {
		mu.Lock()
		waiting++
		ch := release
		if waiting == inFlight {
			close(release)
			waiting, release = 0, make(chan struct{})
		}
		mu.Unlock()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Mesos-Stream-Id") != "" {
			barrier()
		}
		fm.ServeHTTP(w, r)
	}))
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	rec := newRecorder()
	c := startClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(srv.URL), MediaType: string(codecs.MediaTypeJSON)}, rec)
	rec.next(t, ctx, scheduler.Event_SUBSCRIBED)

	round := func() {
		var wg sync.WaitGroup
		for range inFlight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.Call(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE}); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	round() // opens the connections
	before := conns.Load()
	const rounds = 10
	for range rounds {
		round()
	}
	if opened := conns.Load() - before; opened > inFlight {
		t.Errorf("%d rounds of %d overlapping calls opened %d new connections to the master; want them to reuse the %d the first round opened", rounds, inFlight, opened, inFlight)
	}
}
