package mesosoffers

import (
	"os"
	"testing"

	"k8s.io/kubernetes/pkg/scheduler/metrics"
)

// TestMain registers the scheduler's metrics and the plugin's once before any test: tests
// that run upstream's scheduling queue record into them, and registering
// (which creates each lazy metric's collector) from inside one test while
// another's goroutines record is a data race.
func TestMain(m *testing.M) {
	metrics.Register()
	RegisterMetrics()
	os.Exit(m.Run())
}
