package launch

import (
	"os"
	"testing"

	"github.com/k8sm/k8sm/broker/metrics"
)

// TestMain registers the broker's metrics before any test launches:
// registering creates the lazy collectors, which must not race with a
// launch's goroutines recording into them.
func TestMain(m *testing.M) {
	metrics.Register()
	os.Exit(m.Run())
}
