package framework_test

import (
	"os"
	"testing"

	"github.com/k8sm/k8sm/broker/metrics"
)

// TestMain registers the broker's metrics before any test starts a broker:
// registering creates each lazy metric's collector, and doing it in one
// test while an earlier test's goroutines still set the same gauges is a
// data race (the race detector failed CI on it).
func TestMain(m *testing.M) {
	metrics.Register()
	os.Exit(m.Run())
}
