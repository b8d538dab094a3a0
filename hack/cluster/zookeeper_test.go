package cluster

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
)

func TestZooKeeperServesClients(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := StartZooKeeper(ctx, t.TempDir(), port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Error(err)
		}
		if p.Alive() {
			t.Errorf("zookeeper pid %d still alive after Stop", p.Pid())
		}
	})

	conn, events, err := zk.Connect([]string{"127.0.0.1:" + strconv.Itoa(port)}, 10*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for ev := range events {
		if ev.State == zk.StateHasSession {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no ZooKeeper session")
		}
	}
	// An ephemeral sequential node is what Mesos masters register; it must
	// come back with the sequence suffix the leader election relies on.
	path, err := conn.CreateProtectedEphemeralSequential("/k8sm-test-", []byte("x"), zk.WorldACL(zk.PermAll))
	if err != nil {
		t.Fatalf("creating an ephemeral sequential node: %v", err)
	}
	data, _, err := conn.Get(path)
	if err != nil || string(data) != "x" {
		t.Fatalf("reading back %s: %q, %v", path, data, err)
	}
}

func TestZooKeeperRefusesTakenPort(t *testing.T) {
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	first, err := StartZooKeeper(context.Background(), t.TempDir(), port)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Stop()
	_, err = StartZooKeeper(context.Background(), t.TempDir(), port)
	if err == nil {
		t.Fatal("a second ZooKeeper on a taken port started")
	}
	if want := "port " + strconv.Itoa(port) + " for zookeeper is already in use"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}
