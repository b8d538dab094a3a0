package zk_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	brokerzk "github.com/k8sm/k8sm/broker/zk"
)

// cutProxy forwards TCP to a ZooKeeper until Cut, which drops every
// connection and refuses new ones: the client side of a network partition.
type cutProxy struct {
	lis   net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func startProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{lis: lis}
	t.Cleanup(func() { p.Cut() })
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

func (p *cutProxy) Addr() string { return p.lis.Addr().String() }

// Cut partitions the client from ZooKeeper; its session lives on in the
// servers until it expires.
func (p *cutProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	_ = p.lis.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// TestLeaderCutOffFromZooKeeperStepsDownFirst: a leader that loses its
// ZooKeeper connection gives up leadership at once, before its session
// expires and another candidate is elected: never two leaders. (Before,
// it led on until go-zookeeper reported the expiry, which it does only
// after reconnecting: for as long as the partition lasted.)
func TestLeaderCutOffFromZooKeeperStepsDownFirst(t *testing.T) {
	addr := startZK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := startProxy(t, addr)
	a, err := brokerzk.Connect(ctx, []string{proxy.Addr()}, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	b := connect(t, ctx, addr)

	lctxA, err := brokerzk.Elect(ctx, a, "/k8sm/fencing", "broker-a")
	if err != nil {
		t.Fatal(err)
	}
	elected := make(chan error, 1)
	go func() {
		_, err := brokerzk.Elect(ctx, b, "/k8sm/fencing", "broker-b")
		elected <- err
	}()
	proxy.Cut()
	select {
	case err := <-elected:
		if err != nil {
			t.Fatalf("electing broker-b: %v", err)
		}
		if lctxA.Err() == nil {
			t.Fatal("broker-b was elected while broker-a, cut off from ZooKeeper, still led")
		}
	case <-ctx.Done():
		t.Fatal("broker-b was never elected after broker-a's session expired")
	}
}
