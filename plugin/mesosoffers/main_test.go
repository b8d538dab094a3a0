package mesosoffers

import (
	"os"
	"testing"

	"k8s.io/kubernetes/pkg/scheduler/metrics"

	brokermetrics "github.com/k8sm/k8sm/broker/metrics"
)

// TestMain registers the scheduler's metrics, the plugin's and the broker's
// once before any test: tests that run upstream's scheduling queue record
// into them, and registering (which creates each lazy metric's collector)
// from inside one test while another's goroutines record is a data race.
// The broker's are those of the broker the tests start in-process
// (env_test.go), registered as in k8sm-broker, so that a benchmark of
// Reserve and Bind pays for its metrics as the real processes do.
func TestMain(m *testing.M) {
	metrics.Register()
	RegisterMetrics()
	brokermetrics.Register()
	os.Exit(m.Run())
}
