package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// TestWatchOffers: a phase's offers are the counters' growth while it ran
// (not their totals since the broker started) and the gauges' peaks,
// whenever during the phase they peaked.
func TestWatchOffers(t *testing.T) {
	var mu sync.Mutex
	received, declined, held, forPending := 100, 10, 5, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(w, `# TYPE k8sm_broker_offers_received_total counter
k8sm_broker_offers_received_total %d
# TYPE k8sm_broker_offers_declined_total counter
k8sm_broker_offers_declined_total %d
# TYPE k8sm_broker_offers_held gauge
k8sm_broker_offers_held %d
# TYPE k8sm_broker_offers_held_for_pending gauge
k8sm_broker_offers_held_for_pending %d
`, received, declined, held, forPending)
	}))
	defer srv.Close()

	stop := watchOffers(context.Background(), srv.URL)
	mu.Lock()
	received, declined, held, forPending = 160, 25, 3, 2
	mu.Unlock()
	got := stop()
	if got == nil {
		t.Fatal("no offers measured")
	}
	if got.Received != 60 || got.Declined != 15 || got.HeldPeak != 5 || got.HeldForPendingPeak != 2 {
		t.Errorf("got received %g, declined %g, held peak %g, held for pending peak %g; want 60, 15, 5, 2",
			got.Received, got.Declined, got.HeldPeak, got.HeldForPendingPeak)
	}

	srv.Close()
	if got := watchOffers(context.Background(), srv.URL)(); got != nil {
		t.Errorf("with no metrics to read: %+v, want nil", got)
	}
}
