package mesos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
)

// offersEvent is an OFFERS event of n agents' offers, as JSON.
func offersEvent(batch, n int) string {
	var b strings.Builder
	b.WriteString(`{"type":"OFFERS","offers":{"offers":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":{"value":"offer-%d-%d"},"framework_id":{"value":"fw-1"},"agent_id":{"value":"agent-%d"},"hostname":"host-%d",`+
			`"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":8},"role":"*","allocation_info":{"role":"*"}},`+
			`{"name":"mem","type":"SCALAR","scalar":{"value":32768},"role":"*","allocation_info":{"role":"*"}},`+
			`{"name":"ports","type":"RANGES","ranges":{"range":[{"begin":31000,"end":32000}]},"role":"*","allocation_info":{"role":"*"}}],`+
			`"attributes":[{"name":"rack","type":"TEXT","text":{"value":"r1"}}]}`, batch, i, i, i)
	}
	b.WriteString(`]}}`)
	return b.String()
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestNoEventDecodedAheadOfTheHandler: while the handler works on a big
// OFFERS event, the next ones are not decoded yet (at 10,000 agents each is
// ~13 MiB decoded): the broker holds one decoded event at a time, however
// far behind its handler is.
func TestNoEventDecodedAheadOfTheHandler(t *testing.T) {
	ctx := testCtx(t)
	const offers = 3000
	script := []string{offersEvent(1, offers), offersEvent(2, offers), offersEvent(3, offers), offersEvent(4, offers)}
	// What one decoded event costs.
	base := heapInUse()
	one := new(scheduler.Event)
	if err := json.Unmarshal([]byte(script[0]), one); err != nil || len(one.GetOffers().Offers) != offers {
		t.Fatalf("decoding the test's event: %v", err)
	}
	size := heapInUse() - base
	runtime.KeepAlive(one)
	one = nil

	fm := &fakeMaster{heartbeat: 60, callSeen: make(chan string, 100), script: script}
	srv := httptest.NewServer(fm)
	t.Cleanup(srv.Close)
	rec := newRecorder()
	release := make(chan struct{})
	rec.block = func(ctx context.Context, ev *scheduler.Event) {
		if ev.Type == scheduler.Event_OFFERS {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
	}
	base = heapInUse()
	startClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(srv.URL), MediaType: string(codecs.MediaTypeJSON)}, rec)
	rec.next(t, ctx, scheduler.Event_OFFERS) // the handler holds the first
	// The reader would decode the next ones within moments; look for a
	// while whether it does.
	worst := uint64(0)
	for range 20 {
		if h := heapInUse(); h > base && h-base > worst {
			worst = h - base
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(release)
	for range len(script) - 1 {
		rec.next(t, ctx, scheduler.Event_OFFERS)
	}
	t.Logf("one decoded OFFERS event of %d offers: %.1f MiB; held while the handler works on one: %.1f MiB", offers, float64(size)/(1<<20), float64(worst)/(1<<20))
	// One event and the reader's buffers (~2 MiB here), not three events
	// or more.
	if worst >= size*5/2 {
		t.Errorf("%.1f MiB held while the handler works on one event of %.1f MiB: the next events were decoded ahead", float64(worst)/(1<<20), float64(size)/(1<<20))
	}
}
