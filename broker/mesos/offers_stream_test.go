package mesos_test

import (
	"context"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
)

// TestOffersEventOverFourMiB: an allocation of 10,000 agents comes as one
// OFFERS event of ~6 MiB in JSON (~3 MiB in protobuf, more with more
// agents or attributes). mesos-go's RecordIO reader refused any record over
// 4 MiB ("token too long") and the broker dropped the subscription on every
// allocation; each offer must reach the handler.
func TestOffersEventOverFourMiB(t *testing.T) {
	ctx := testCtx(t)
	const offers = 10000
	const rescind = `{"type":"RESCIND","rescind":{"offer_id":{"value":"offer-1-0"}}}`
	ev := offersEvent(1, offers)
	if len(ev) <= 4<<20 {
		t.Fatalf("the test's event is %d bytes, not over 4 MiB", len(ev))
	}
	fm := &fakeMaster{heartbeat: 60, callSeen: make(chan string, 100), script: []string{ev, rescind}}
	srv := httptest.NewServer(fm)
	t.Cleanup(srv.Close)
	rec := newRecorder()
	c := startClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(srv.URL), MediaType: string(codecs.MediaTypeJSON)}, rec)
	got := rec.next(t, ctx, scheduler.Event_OFFERS)
	os := got.GetOffers().Offers
	if len(os) != offers {
		t.Fatalf("the OFFERS event came with %d offers, want %d", len(os), offers)
	}
	for i := range os {
		if want := "agent-" + itoa(i); os[i].AgentID.Value != want || len(os[i].Resources) != 3 {
			t.Fatalf("offer %d: agent %s with %d resources, want %s with 3", i, os[i].AgentID.Value, len(os[i].Resources), want)
		}
	}
	if got := rec.next(t, ctx, scheduler.Event_RESCIND); got.GetRescind().OfferID.Value != "offer-1-0" {
		t.Errorf("the event after the offers rescinds %q, want offer-1-0", got.GetRescind().OfferID.Value)
	}
	if n := fm.subscribeCount(); n != 1 || c.Subscriptions() != 1 {
		t.Errorf("%d SUBSCRIBE calls, %d subscriptions: the event ended the subscription (%v)", n, c.Subscriptions(), c.LastError())
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// batchRecorder is a recorder that takes offers as they are decoded.
type batchRecorder struct {
	*recorder
	mu        sync.Mutex
	put       int
	committed [][]string // the agent ids of each committed event
}

type testBatch struct {
	r      *batchRecorder
	agents []string
}

func (r *batchRecorder) NewOfferBatch() brokermesos.OfferBatch { return &testBatch{r: r} }

func (b *testBatch) Offer(o *mesos.Offer) {
	b.r.mu.Lock()
	b.r.put++
	b.r.mu.Unlock()
	b.agents = append(b.agents, o.AgentID.Value)
}

func (b *testBatch) Commit(ctx context.Context, ev *scheduler.Event) {
	b.r.mu.Lock()
	b.r.committed = append(b.r.committed, b.agents)
	b.r.mu.Unlock()
	_ = b.r.recorder.HandleEvent(ctx, ev)
}

func (r *batchRecorder) HandleEvent(ctx context.Context, ev *scheduler.Event) error {
	if ev.Type == scheduler.Event_OFFERS {
		// Only when decoded whole.
		var agents []string
		for _, o := range ev.GetOffers().Offers {
			agents = append(agents, o.AgentID.Value)
		}
		r.mu.Lock()
		r.committed = append(r.committed, agents)
		r.mu.Unlock()
	}
	return r.recorder.HandleEvent(ctx, ev)
}

// TestMalformedOffersEventLeavesNoOffer: an OFFERS event whose second offer
// does not decode ends the subscription with an error naming the offer, and
// none of its offers reaches the handler — not even the first, decoded
// before the bad one was read. The good event before it arrives whole.
func TestMalformedOffersEventLeavesNoOffer(t *testing.T) {
	ctx := testCtx(t)
	good := offersEvent(1, 3)
	bad := strings.Replace(offersEvent(2, 3), `"hostname":"host-1"`, `"hostname":5`, 1)
	fm := &fakeMaster{heartbeat: 60, callSeen: make(chan string, 100), script: []string{good, bad}}
	srv := httptest.NewServer(fm)
	t.Cleanup(srv.Close)
	rec := &batchRecorder{recorder: newRecorder()}
	c := startClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(srv.URL), MediaType: string(codecs.MediaTypeJSON)}, rec)
	for {
		if err := c.LastError(); err != nil {
			if !strings.Contains(err.Error(), "decoding offer 1") {
				t.Fatalf("the subscription ended with %q, want an error naming offer 1", err)
			}
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the malformed event did not end the subscription")
		case <-time.After(10 * time.Millisecond):
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.committed) == 0 {
		t.Fatal("the good OFFERS event did not reach the handler")
	}
	for i, agents := range rec.committed {
		if want := []string{"agent-0", "agent-1", "agent-2"}; !slices.Equal(agents, want) {
			t.Errorf("OFFERS event %d reached the handler with the offers of agents %v, want %v", i, agents, want)
		}
	}
}
