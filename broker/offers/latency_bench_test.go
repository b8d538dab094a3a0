package offers

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/k8sm/k8sm/broker/offers/offerstest"
)

// latencyAgents is the size of the bench's burst runs.
const latencyAgents = 1000

// BenchmarkReserveDuringOffers measures what a Reserve waits for while the
// cache takes whole OFFERS events of latencyAgents offers and declines them
// again, as the broker does at every allocation after a revive and every
// DeclineAfter: the scheduler's Reserve and the launcher's Get and Take wait
// on the same lock. The background takes latencyRounds such events, 20 ms
// apart; meanwhile a Reserve (and its Unreserve) runs every 50 µs. It
// reports the Reserves' latency percentiles and maximum (µs), the time one
// OFFERS event and one Declinable took (ms), and, as ns/op, nothing useful:
// run it with -benchtime=1x.
//
//	go test -run '^$' -bench ReserveDuringOffers -benchtime=1x ./broker/offers
func BenchmarkReserveDuringOffers(b *testing.B) {
	for b.Loop() {
		benchReserveDuringOffers(b)
	}
}

const latencyRounds = 40

func benchReserveDuringOffers(b *testing.B) {
	clk := clocktesting.NewFakeClock(time.Now())
	c := New(Config{Executor: res(0.1, 32), Clock: clk})
	// A watcher drains the events, as the gRPC server's stream does.
	w := c.Watch()
	defer w.Stop()
	stop, done := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-w.ch:
			}
		}
	}()
	base := offerstest.SimOffers(latencyAgents)
	// One agent keeps an offer that is never declined, for the Reserves.
	keep := mkOffer("keep", "keep-agent", "keep-node", "*", res(1000, 1<<20))
	c.Add(keep)
	var addTime, declineTime time.Duration
	go func() {
		defer close(done)
		for round := range latencyRounds {
			os := make([]mesos.Offer, len(base))
			copy(os, base)
			for i := range os {
				os[i].ID = mesos.OfferID{Value: fmt.Sprintf("%s-r%d", base[i].ID.Value, round)}
			}
			t0 := time.Now()
			c.Add(os...)
			addTime += time.Since(t0)
			time.Sleep(20 * time.Millisecond)
			clk.Step(time.Minute)
			t0 = time.Now()
			c.Declinable()
			declineTime += time.Since(t0)
			c.Add(mkOffer(fmt.Sprintf("keep-r%d", round), "keep-agent", "keep-node", "*", res(1000, 1<<20)))
			time.Sleep(20 * time.Millisecond)
		}
	}()
	d := demand(0.01, 16)
	var lat []time.Duration
	for i := 0; ; i++ {
		select {
		case <-done:
		default:
			t0 := time.Now()
			r, err := c.Reserve(ReserveRequest{Pod: PodRef{UID: types.UID(fmt.Sprint(i)), Namespace: "default", Name: "p"}, NodeName: "keep-node", Demand: d})
			lat = append(lat, time.Since(t0))
			// Refused between a decline and the next offer: timed all
			// the same, it waited for the lock as long.
			if err == nil {
				c.Unreserve(r.ID, "")
			}
			time.Sleep(50 * time.Microsecond)
			continue
		}
		break
	}
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1000
	}
	b.ReportMetric(float64(len(lat)), "reserves")
	b.ReportMetric(pct(0.5), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(pct(0.999), "p99.9-µs")
	b.ReportMetric(float64(lat[len(lat)-1].Nanoseconds())/1000, "max-µs")
	b.ReportMetric(float64(addTime.Microseconds())/1000/latencyRounds, "add-ms")
	b.ReportMetric(float64(declineTime.Microseconds())/1000/latencyRounds, "decline-ms")
}
