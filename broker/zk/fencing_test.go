package zk_test

import (
	"context"
	"testing"
	"time"

	brokerzk "github.com/k8sm/k8sm/broker/zk"
	"github.com/k8sm/k8sm/hack/cluster/zktesting"
)

// TestLeaderCutOffFromZooKeeperStepsDownFirst: a leader that loses its
// ZooKeeper connection gives up leadership at once, before its session
// expires and another candidate is elected: never two leaders. (Before,
// it led on until go-zookeeper reported the expiry, which it does only
// after reconnecting: for as long as the partition lasted.)
func TestLeaderCutOffFromZooKeeperStepsDownFirst(t *testing.T) {
	addr := startZK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	proxy := zktesting.StartProxy(t, addr)
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
