// Package zktesting starts a real ZooKeeper for a test. A ZooKeeper that
// does not start fails the test: a skipped test would let the coverage of
// everything that depends on ZooKeeper (leader election, fencing, master
// detection) vanish without anyone noticing.
package zktesting

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
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

// Proxy forwards TCP to a ZooKeeper until Cut, which drops every connection
// and refuses new ones: the client's side of a network partition, the
// servers (and the client's session in them) untouched.
type Proxy struct {
	lis   net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

// StartProxy forwards a local address to target until Cut or the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{lis: lis}
	t.Cleanup(p.Cut)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			p.mu.Lock()
			if err != nil || p.cut {
				p.mu.Unlock()
				_ = c.Close()
				if up != nil {
					_ = up.Close()
				}
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { _, _ = io.Copy(c, up); _ = c.Close() }()
		}
	}()
	return p
}

// Addr is the host:port to give the client instead of ZooKeeper's.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Cut partitions the client from ZooKeeper for good; its session lives on
// in the servers until it expires.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	_ = p.lis.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}
