package bench

import (
	"context"
	"sync"
	"time"
)

// PhaseOffers is what the broker did with Mesos offers while a k8sm phase
// ran, from its k8sm_broker_* metrics: how many offers came and how many it
// declined (the counters' growth over the phase), and the most it held at
// once, in all and past --decline-after for pending pods (the gauges,
// sampled every offerSampleEvery and at both ends). Declines are what a
// shared Mesos cluster sees of k8sm: each is an allocation handed back and
// made again.
type PhaseOffers struct {
	Received           float64 `json:"received"`
	Declined           float64 `json:"declined"`
	HeldPeak           float64 `json:"held_peak"`
	HeldForPendingPeak float64 `json:"held_for_pending_peak"`
	Samples            int     `json:"samples"`
	// The counters when the phase began.
	receivedAt, declinedAt float64
}

const (
	offersReceivedMetric       = "k8sm_broker_offers_received_total"
	offersDeclinedMetric       = "k8sm_broker_offers_declined_total"
	offersHeldMetric           = "k8sm_broker_offers_held"
	offersHeldForPendingMetric = "k8sm_broker_offers_held_for_pending"
	offerSampleEvery           = time.Second
)

// watchOffers samples the broker's metrics at url until the returned stop
// is called, which returns what the phase did; nil if the metrics could
// never be read.
func watchOffers(ctx context.Context, url string) (stop func() *PhaseOffers) {
	var (
		mu    sync.Mutex
		res   PhaseOffers
		first = true
	)
	sample := func() {
		samples, ok := scrape(ctx, url)
		if !ok {
			return
		}
		value := func(name string) float64 {
			if v := matching(samples, name, nil); len(v) > 0 {
				return v[0]
			}
			return 0
		}
		mu.Lock()
		defer mu.Unlock()
		received, declined := value(offersReceivedMetric), value(offersDeclinedMetric)
		if first {
			res.receivedAt, res.declinedAt, first = received, declined, false
		}
		res.Received, res.Declined = received-res.receivedAt, declined-res.declinedAt
		res.HeldPeak = max(res.HeldPeak, value(offersHeldMetric))
		res.HeldForPendingPeak = max(res.HeldForPendingPeak, value(offersHeldForPendingMetric))
		res.Samples++
	}
	sample()
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(offerSampleEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return func() *PhaseOffers {
		close(done)
		<-finished
		sample()
		mu.Lock()
		defer mu.Unlock()
		if res.Samples == 0 {
			return nil
		}
		out := res
		return &out
	}
}
