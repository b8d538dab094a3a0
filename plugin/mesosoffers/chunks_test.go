package mesosoffers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// scriptedBroker serves one WatchOffers stream whose messages the test hands
// over one at a time: once Recv took message k+1, message k is applied.
type scriptedBroker struct {
	brokerv1.BrokerClient
	msgs chan recvd
}

type recvd struct {
	ev  *brokerv1.WatchOffersResponse
	err error
}

type scriptedStream struct {
	grpc.ClientStream
	msgs chan recvd
}

func (b *scriptedBroker) WatchOffers(context.Context, *brokerv1.WatchOffersRequest, ...grpc.CallOption) (grpc.ServerStreamingClient[brokerv1.WatchOffersResponse], error) {
	return &scriptedStream{msgs: b.msgs}, nil
}

func (s *scriptedStream) Recv() (*brokerv1.WatchOffersResponse, error) {
	m := <-s.msgs
	return m.ev, m.err
}

// watchScripted runs watchOnce against a scripted stream; send hands it the
// next message, and the returned channel has watchOnce's result.
func watchScripted(t *testing.T, m *mirror) (send func(*brokerv1.WatchOffersResponse, error), done chan error) {
	t.Helper()
	b := &scriptedBroker{msgs: make(chan recvd)}
	done = make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		_, err := m.watchOnce(ctx, b, func(context.Context, []*agent) {})
		done <- err
	}()
	return func(ev *brokerv1.WatchOffersResponse, err error) { b.msgs <- recvd{ev, err} }, done
}

// ended waits for the watch's end; a watch that goes on is a failure, not a
// hang.
func ended(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the watch went on")
		return nil
	}
}

// chunk is one chunk of a snapshot of epoch at version of the given hosts.
func chunk(epoch string, version uint64, more bool, hosts ...string) *brokerv1.WatchOffersResponse {
	snap := &brokerv1.Snapshot{Epoch: epoch, More: more}
	for _, h := range hosts {
		snap.Agents = append(snap.Agents, &brokerv1.Agent{AgentId: "id-" + h, Hostname: h, ResourceVersion: version})
	}
	return &brokerv1.WatchOffersResponse{ResourceVersion: version, Event: &brokerv1.WatchOffersResponse_Snapshot{Snapshot: snap}}
}

func hostsOf(m *mirror) string {
	var hosts []string
	m.each(func(a *agent) bool { hosts = append(hosts, a.hostname); return true })
	slices.Sort(hosts)
	return fmt.Sprint(len(hosts), " ", strings.Join(hosts, ","))
}

// TestChunkedSnapshotReplacesTheViewAtOnce: a resync snapshot in chunks
// leaves the previous view in place until its last chunk, then replaces it
// whole; an agent of the old view that is in no chunk is gone.
func TestChunkedSnapshotReplacesTheViewAtOnce(t *testing.T) {
	m := newMirror(nil)
	send, _ := watchScripted(t, m)
	send(chunk("e1", 5, false, "old-1", "node-1"), nil)
	send(chunk("e1", 9, true, "node-1", "node-2"), nil)
	send(chunk("e1", 9, true, "node-3"), nil)
	// The first two chunks are in; the view is still the first snapshot's.
	if got := hostsOf(m); got != "2 node-1,old-1" {
		t.Errorf("view in the middle of a chunked snapshot: %s, want the old one (old-1, node-1)", got)
	}
	send(chunk("e1", 9, false, "node-4"), nil)
	send(agentEvent(10, 1), nil) // taken once the last chunk is applied
	if got := hostsOf(m); got != "4 node-1,node-2,node-3,node-4" {
		t.Errorf("view after the last chunk: %s, want node-1..4 and no old-1", got)
	}
	if synced, err := m.state(); !synced || err != nil {
		t.Errorf("state %v %v after a whole snapshot", synced, err)
	}
}

// TestStreamCutMidSnapshotLeavesNoPartialView: a watch that ends between
// chunks applies none of them; the mirror then drops its view as for any
// ended watch, so no pod is scheduled on half a view.
func TestStreamCutMidSnapshotLeavesNoPartialView(t *testing.T) {
	m := newMirror(nil)
	send, done := watchScripted(t, m)
	send(chunk("e1", 9, true, "node-1", "node-2"), nil)
	send(chunk("e1", 9, true, "node-3"), nil)
	cut := errors.New("connection reset")
	send(nil, cut)
	if err := ended(t, done); !errors.Is(err, cut) {
		t.Fatalf("watch ended with %v, want the cut", err)
	}
	if got := hostsOf(m); got != "0 " {
		t.Errorf("view after a stream cut mid-snapshot: %s, want nothing of the partial snapshot", got)
	}
	if synced, _ := m.state(); synced {
		t.Error("mirror synced from a partial snapshot")
	}
}

// TestMixedChunksEndTheWatch: chunks of another epoch or version, or a delta,
// in the middle of a snapshot end the watch with an error naming it, and
// nothing of that snapshot is applied (the broker restarted or misbehaved;
// the next watch starts with a whole snapshot, and the epoch check there
// drops the claims of the old broker).
func TestMixedChunksEndTheWatch(t *testing.T) {
	for name, tc := range map[string]struct {
		next *brokerv1.WatchOffersResponse
		want string
	}{
		"another epoch":   {chunk("e2", 9, false, "node-3"), "epoch e2"},
		"another version": {chunk("e1", 12, false, "node-3"), "version 12"},
		"a delta":         {agentEvent(10, 1), "in the middle of a snapshot"},
	} {
		t.Run(name, func(t *testing.T) {
			m := newMirror(nil)
			send, done := watchScripted(t, m)
			send(chunk("e1", 5, false, "old-1"), nil)
			send(chunk("e1", 9, true, "node-1", "node-2"), nil)
			send(tc.next, nil)
			err := ended(t, done)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("watch ended with %v, want an error saying %q", err, tc.want)
			}
			if got := hostsOf(m); got != "1 old-1" {
				t.Errorf("view %s, want the last whole snapshot's (old-1) until the watch is reopened", got)
			}
		})
	}
}
