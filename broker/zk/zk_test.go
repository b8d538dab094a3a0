package zk_test

import (
	"context"
	"testing"
	"time"

	brokerzk "github.com/k8sm/k8sm/broker/zk"
	"github.com/k8sm/k8sm/hack/cluster/zktesting"
)

func startZK(t *testing.T) string { return zktesting.Start(t) }

func connect(t *testing.T, ctx context.Context, addr string) *brokerzk.Session {
	t.Helper()
	s, err := brokerzk.Connect(ctx, []string{addr}, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestParseURL(t *testing.T) {
	servers, p, err := brokerzk.ParseURL("zk://a:2181,b/mesos/")
	if err != nil || len(servers) != 2 || servers[1] != "b:2181" || p != "/mesos" {
		t.Fatalf("ParseURL: %v %q %v", servers, p, err)
	}
	for _, bad := range []string{"http://a/mesos", "zk://a:2181", "zk:///mesos", "zk://a,,b/mesos"} {
		if _, _, err := brokerzk.ParseURL(bad); err == nil {
			t.Errorf("ParseURL(%q) accepted", bad)
		}
	}
}

func TestMasterURL(t *testing.T) {
	for in, want := range map[string]string{
		`{"id":"m","ip":16777343,"port":5050,"address":{"hostname":"h","ip":"10.0.0.1","port":5051}}`: "http://10.0.0.1:5051",
		`{"id":"m","ip":16777343,"port":5050}`:                                                        "http://127.0.0.1:5050",
		`{"id":"m","hostname":"master.example","port":5050}`:                                          "http://master.example:5050",
	} {
		got, err := brokerzk.MasterURL([]byte(in))
		if err != nil || got != want {
			t.Errorf("MasterURL(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := brokerzk.MasterURL([]byte(`{"id":"m"}`)); err == nil {
		t.Error("MasterURL without an address accepted")
	}
}

// TestFrameworkIDSurvivesSessions: the id written by one broker session is
// read by the next.
func TestFrameworkIDSurvivesSessions(t *testing.T) {
	addr := startZK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := connect(t, ctx, addr)
	store := brokerzk.NewFrameworkIDStore(a, "/k8sm/test")
	if id, err := store.Get(ctx); err != nil || id != "" {
		t.Fatalf("empty store: %q %v", id, err)
	}
	for _, id := range []string{"fw-1", "fw-2"} {
		if err := store.Set(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	b := connect(t, ctx, addr)
	if id, err := brokerzk.NewFrameworkIDStore(b, "/k8sm/test").Get(ctx); err != nil || id != "fw-2" {
		t.Fatalf("after a new session: %q %v, want fw-2", id, err)
	}
}

// TestElection: one leader at a time; when the leader's session ends the
// next candidate takes over.
func TestElection(t *testing.T) {
	addr := startZK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b := connect(t, ctx, addr), connect(t, ctx, addr)
	lctxA, err := brokerzk.Elect(ctx, a, "/k8sm/election", "broker-a")
	if err != nil {
		t.Fatal(err)
	}
	elected := make(chan context.Context, 1)
	go func() {
		l, err := brokerzk.Elect(ctx, b, "/k8sm/election", "broker-b")
		if err != nil {
			t.Error(err)
			return
		}
		elected <- l
	}()
	if who, err := brokerzk.Leader(a, "/k8sm/election"); err != nil || who != "broker-a" {
		t.Fatalf("leader %q %v, want broker-a", who, err)
	}
	select {
	case <-elected:
		t.Fatal("broker-b elected while broker-a leads")
	default:
	}
	a.Close() // the leader dies
	select {
	case <-lctxA.Done():
	case <-ctx.Done():
		t.Fatal("broker-a's leadership context outlived its session")
	}
	select {
	case <-elected:
	case <-ctx.Done():
		t.Fatal("broker-b never took over")
	}
	if who, err := brokerzk.Leader(b, "/k8sm/election"); err != nil || who != "broker-b" {
		t.Fatalf("leader %q %v, want broker-b", who, err)
	}
}
