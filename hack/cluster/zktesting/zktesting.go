// Package zktesting starts a real ZooKeeper for a test. A ZooKeeper that
// does not start fails the test: a skipped test would let the coverage of
// everything that depends on ZooKeeper (leader election, fencing, master
// detection) vanish without anyone noticing.
package zktesting

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/k8sm/k8sm/hack/cluster"
)

// Start runs a standalone ZooKeeper for the test's lifetime and returns its
// host:port. Run such tests under the cluster lock (see the README).
func Start(t testing.TB) string {
	t.Helper()
	port, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	p, err := cluster.StartZooKeeper(ctx, t.TempDir(), port)
	if err != nil {
		t.Fatalf("starting ZooKeeper (needed by this test; install it with hack/install-deps.sh): %v", err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return "127.0.0.1:" + strconv.Itoa(port)
}
