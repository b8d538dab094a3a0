package mesos

import (
	"testing"
	"time"
)

// TestSubscriptionBackoff: waits between subscription attempts start at
// MinBackoff and double up to MaxBackoff, each jittered within the upper
// half of its step.
func TestSubscriptionBackoff(t *testing.T) {
	c := &Client{cfg: Config{MinBackoff: time.Second, MaxBackoff: 8 * time.Second}}
	for range 20 { // jitter: several draws
		b := c.backoff()
		for i, upper := range []time.Duration{1, 2, 4, 8, 8, 8} {
			upper *= time.Second
			if got := b.Step(); got < upper/2 || got > upper {
				t.Fatalf("wait %d: %v, want within [%v, %v]", i, got, upper/2, upper)
			}
		}
	}
}
