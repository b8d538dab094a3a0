package mesos_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
)

// TestFailedOverClientStepsDown: when a second scheduler subscribes with the
// framework's id (a new leader), the master tells the first one "Framework
// failed over"; the first must stop, not subscribe again and take the
// framework back (the two would fail each other over for ever, both
// launching and killing tasks).
func TestFailedOverClientStepsDown(t *testing.T) {
	s := startSim(t, mesossim.Config{})
	ctx := testCtx(t)
	store := &brokermesos.MemoryIDStore{}
	cfg := brokermesos.Config{Detector: brokermesos.StaticMaster(s.MasterURL()), Framework: framework(), Store: store,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}

	old, err := brokermesos.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	oldRec := newRecorder()
	done := make(chan error, 1)
	go func() { done <- old.Run(ctx, oldRec) }()
	oldRec.next(t, ctx, scheduler.Event_SUBSCRIBED)

	taker, _ := runClient(t, ctx, cfg)
	taker.rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
	for stepped := false; !stepped; {
		select {
		case err := <-done:
			if !errors.Is(err, brokermesos.ErrFailedOver) {
				t.Errorf("the failed-over client ended with %v, want ErrFailedOver", err)
			}
			stepped = true
		case <-ctx.Done():
			t.Fatalf("the failed-over client did not step down (subscriptions: %d)", old.Subscriptions())
		case <-time.After(20 * time.Millisecond):
			if old.Subscriptions() > 1 {
				t.Fatalf("the failed-over client subscribed again and took the framework back")
			}
		}
	}
	if n := old.Subscriptions(); n != 1 {
		t.Errorf("the failed-over client subscribed %d times, want once", n)
	}
	if n := taker.c.Subscriptions(); n != 1 {
		t.Errorf("the new leader subscribed %d times, want once (it was failed over in turn)", n)
	}
}
