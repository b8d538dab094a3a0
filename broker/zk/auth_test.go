package zk_test

import (
	"context"
	"errors"
	"testing"
	"time"

	gozk "github.com/go-zookeeper/zk"

	brokerzk "github.com/k8sm/k8sm/broker/zk"
)

func TestParseCredentials(t *testing.T) {
	a, err := brokerzk.URLAuth("zk://k8sm:s3cr:et@zk1:2181,zk2/k8sm")
	if err != nil || a == nil || a.User != "k8sm" || a.Password != "s3cr:et" {
		t.Errorf("URLAuth: %+v %v", a, err)
	}
	if a, err := brokerzk.URLAuth("zk://zk1:2181/k8sm"); a != nil || err != nil {
		t.Errorf("a URL without credentials: %+v %v", a, err)
	}
	// Given but unusable: an error, never silently dropped.
	for _, bad := range []string{"zk://k8sm@zk1/k8sm", "zk://:pw@zk1/k8sm", "zk://k8sm:@zk1/k8sm"} {
		if _, err := brokerzk.URLAuth(bad); err == nil {
			t.Errorf("URLAuth(%q) accepted", bad)
		}
	}
	// The path may hold an @.
	if a, err := brokerzk.URLAuth("zk://zk1:2181/k8sm@x"); a != nil || err != nil {
		t.Errorf("an @ in the path: %+v %v", a, err)
	}
}

// TestZnodesAreOwnerOnly: with credentials, the framework id and the
// election are out of reach of a session without them (which could
// otherwise delete the framework id or block the election), and readable
// by a session with them.
func TestZnodesAreOwnerOnly(t *testing.T) {
	addr := startZK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	owner := &brokerzk.Auth{User: "k8sm", Password: "pw"}
	s, err := brokerzk.ConnectAs(ctx, []string{addr}, 0, owner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := brokerzk.NewFrameworkIDStore(s, "/k8sm").Set(ctx, "fw-1"); err != nil {
		t.Fatal(err)
	}
	lctx, err := brokerzk.Elect(ctx, s, "/k8sm/leader", "broker-1")
	if err != nil {
		t.Fatal(err)
	}
	_ = lctx

	intruder := connect(t, ctx, addr)
	if err := intruder.Delete("/k8sm/framework-id", -1); !errors.Is(err, gozk.ErrNoAuth) {
		t.Errorf("an unauthenticated session deleting the framework id: %v, want ErrNoAuth", err)
	}
	if _, _, err := intruder.Get("/k8sm/framework-id"); !errors.Is(err, gozk.ErrNoAuth) {
		t.Errorf("an unauthenticated session reading the framework id: %v, want ErrNoAuth", err)
	}
	if _, err := intruder.Create("/k8sm/leader/candidate_0000000000", nil, gozk.FlagEphemeral, gozk.WorldACL(gozk.PermAll)); !errors.Is(err, gozk.ErrNoAuth) {
		t.Errorf("an unauthenticated session joining the election: %v, want ErrNoAuth", err)
	}
	other, err := brokerzk.ConnectAs(ctx, []string{addr}, 0, &brokerzk.Auth{User: "k8sm", Password: "wrong"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.Close)
	if err := other.Delete("/k8sm/framework-id", -1); !errors.Is(err, gozk.ErrNoAuth) {
		t.Errorf("a session with the wrong password deleting the framework id: %v, want ErrNoAuth", err)
	}

	again, err := brokerzk.ConnectAs(ctx, []string{addr}, 0, owner)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(again.Close)
	if id, err := brokerzk.NewFrameworkIDStore(again, "/k8sm").Get(ctx); err != nil || id != "fw-1" {
		t.Errorf("the owner in a new session: %q %v, want fw-1", id, err)
	}
}
