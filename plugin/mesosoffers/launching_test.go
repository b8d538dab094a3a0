package mesosoffers

import (
	"context"
	"errors"
	"sync"
	"testing"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// streamHold holds the broker's offer stream while engaged: the messages
// wait in the broker, standing in for a stream that lags behind the
// broker's answers to Reserve and Launch.
type streamHold struct {
	mu   sync.Mutex
	open chan struct{} // nil while not held
}

func (h *streamHold) hold() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.open == nil {
		h.open = make(chan struct{})
	}
}

func (h *streamHold) release() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.open != nil {
		close(h.open)
		h.open = nil
	}
}

func (h *streamHold) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, heldStream{ServerStream: ss, h: h})
}

type heldStream struct {
	grpc.ServerStream
	h *streamHold
}

func (s heldStream) SendMsg(m any) error {
	s.h.mu.Lock()
	open := s.h.open
	s.h.mu.Unlock()
	if open != nil {
		select {
		case <-open:
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
	return s.ServerStream.SendMsg(m)
}

// launchHeld reserves a new pod on node (agent agentID), waits for the view
// to show the reservation, then holds the offer stream and binds it: the
// pod's launch is answered while the view has not seen the broker's take.
func (e *env) launchHeld(ctx context.Context, t *testing.T, hold *streamHold, agentID, node string) *v1.Pod {
	t.Helper()
	p := mkPod("500m", "64Mi")
	state, answered := e.reserveNew(t, p, node)
	if st := <-answered; !st.IsSuccess() {
		t.Fatalf("Reserve %s: %v", p.Name, st)
	}
	reserved, _ := e.broker.cache.Agent(agentID)
	e.waitFor(t, p.Name+"'s reservation in the view", func() bool { return e.pl.mirror.get(node).version >= reserved.Version })
	hold.hold()
	if st := e.pl.Bind(ctx, state, p, node); !st.IsSuccess() {
		t.Fatalf("Bind %s: %v", p.Name, st)
	}
	return p
}

const launchingReason = "mesos: the node's offers are being accepted for a launch"

// TestPodGoesElsewhereWhileALaunchTakesTheAgentsOffers: pod a is launched
// on n1, and the offer stream has not delivered the broker's take yet. The
// ACCEPT took the offer a's claim rested on, so a pod placed on n1 now would
// fail its bind; the plugin sends pod b to n2 instead, saying why n1 does
// not fit, and refuses a Reserve on n1 without asking the broker. Once the
// stream shows the take, n1 holds what the ACCEPT left (its other offer),
// and b fits there again.
func TestPodGoesElsewhereWhileALaunchTakesTheAgentsOffers(t *testing.T) {
	var hold streamHold
	b := startBroker(t, "127.0.0.1:0", grpc.StreamInterceptor(hold.intercept))
	pl, h := newPlugin(t, b.addr, "")
	e := &env{broker: b, handle: h, pl: pl}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	// n1's older offer is the one the broker accepts for a; the newer one
	// stays outstanding.
	e.offer(t, mkOffer("a1", "n1", res(1, 1024)))
	e.offer(t, mkOffer("a1", "n1", res(2, 2048)))
	e.offer(t, mkOffer("a2", "n2", res(2, 2048)))
	bindings := bindingsOf(h, nil)
	ctx := context.Background()

	pa := e.launchHeld(ctx, t, &hold, "a1", "n1")
	took, _ := b.cache.Agent("a1")
	if v := pl.mirror.get("n1").version; v >= took.Version {
		t.Fatalf("the view of n1 is at version %d, the broker's take at %d: the stream was not held", v, took.Version)
	}

	pb := mkPod("500m", "64Mi")
	createPod(t, h, pb)
	state, st, nodes := e.schedule(t, pb, "n1", "n2")
	if st != nil {
		t.Fatalf("PreFilter b: %v", st)
	}
	wantReasons(t, nodes["n1"], fwk.Unschedulable, launchingReason)
	if !nodes["n2"].IsSuccess() {
		t.Errorf("Filter b on n2: %v, want fit", nodes["n2"])
	}
	if st := <-reserveAsync(pl, state, pb, "n1"); st.IsSuccess() || st.Message() != launchingReason {
		t.Errorf("Reserve b on n1 = %v, want refused: %s", st, launchingReason)
	}

	hold.release()
	e.waitFor(t, "the broker's take in the view", func() bool { return pl.mirror.get("n1").version >= took.Version })
	state, _, nodes = e.schedule(t, pb, "n1")
	if !nodes["n1"].IsSuccess() {
		t.Fatalf("Filter b on n1 once the view shows the launch (n1's other offer is outstanding): %v", nodes["n1"])
	}
	if st := <-reserveAsync(pl, state, pb, "n1"); !st.IsSuccess() {
		t.Fatalf("Reserve b: %v", st)
	}
	if st := pl.Bind(ctx, state, pb, "n1"); !st.IsSuccess() {
		t.Fatalf("Bind b: %v", st)
	}
	if got := bindings(); got[pa.Name] != "n1" || got[pb.Name] != "n1" {
		t.Errorf("bindings %v, want both on n1", got)
	}
	// b's launch too leaves nothing behind once the view shows it.
	e.waitFor(t, "no launch awaited by the view", func() bool { return pl.mirror.launchCount() == 0 })
}

// TestLaunchMarkEndsWithTheWatch: a launch whose take the view has not
// shown yet stops counting when the watch breaks: the broker that comes
// back (another epoch, its versions below the launch's) is trusted as it
// offers.
func TestLaunchMarkEndsWithTheWatch(t *testing.T) {
	var hold streamHold
	b1 := startBroker(t, "127.0.0.1:0", grpc.StreamInterceptor(hold.intercept))
	pl, h := newPlugin(t, b1.addr, "")
	e := &env{broker: b1, handle: h, pl: pl}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	e.offer(t, mkOffer("a1", "n1", res(2, 2048)))
	bindingsOf(h, nil)
	ctx := context.Background()

	e.launchHeld(ctx, t, &hold, "a1", "n1")
	pb := mkPod("500m", "64Mi")
	if _, _, nodes := e.schedule(t, pb, "n1"); nodes["n1"].Message() != launchingReason {
		t.Fatalf("Filter b on n1 while a's launch is not in the view: %v, want %q", nodes["n1"], launchingReason)
	}

	b1.g.Stop()
	b2 := startBroker(t, b1.addr)
	b2.cache.Add(mkOffer("a1", "n1", res(2, 2048)))
	e.broker = b2
	e.waitFor(t, "the view of the new broker", func() bool {
		pl.mirror.mu.RLock()
		defer pl.mirror.mu.RUnlock()
		return pl.mirror.synced && pl.mirror.epoch == b2.cache.Epoch() && pl.mirror.agents["n1"] != nil
	})
	if _, _, nodes := e.schedule(t, pb, "n1"); !nodes["n1"].IsSuccess() {
		t.Errorf("Filter b on n1 in the new broker's view: %v, want fit", nodes["n1"])
	}
}

// TestLaunchMarkLifetime: the mirror's side of a launch in flight. The
// agent holds nothing for new pods from the moment Bind decides to launch;
// the mark goes when the view reaches the version the broker answered
// with (not before, even if the agent changes meanwhile), at once when the
// launch failed or took no offers, and with a snapshot of another epoch or
// a broken watch.
func TestLaunchMarkLifetime(t *testing.T) {
	half := podresources.Demand{Scalars: podresources.Scalars{CPUs: 500}}
	fits := func(m *mirror) bool {
		a := m.get("node-1")
		return a != nil && a.holds(half)
	}
	var resets []error
	m := newMirror(func(err error) { resets = append(resets, err) })
	m.apply(snapshotEvent("e1", agentEvent(5, 4)))

	mk, _ := m.launching("node-1", "pod-a")
	if fits(m) {
		t.Fatal("a launch in flight: the agent still holds new pods")
	}
	if _, _, _, err := m.claim("node-1", "pod-b", half); !errors.Is(err, errLaunching) {
		t.Errorf("claim during a launch: %v, want %v", err, errLaunching)
	}
	m.apply(agentEvent(6, 4)) // a change before the broker's take
	if fits(m) {
		t.Error("the agent changed before the launch answered: it holds new pods again")
	}
	if a := m.launched(mk, 8); a != nil || fits(m) {
		t.Errorf("answered with version 8, view at 6: the agent holds new pods (activated %v)", a != nil)
	}
	m.apply(agentEvent(7, 4))
	if fits(m) {
		t.Error("view at 7 of a take at 8: the agent holds new pods")
	}
	m.apply(agentEvent(8, 1))
	if !fits(m) || m.launchCount() != 0 {
		t.Errorf("view at the take's version: fits %v, %d launches awaited; want the remainder and none", fits(m), m.launchCount())
	}

	// A failed launch, or one that took no offers, lets go at once.
	mk, _ = m.launching("node-1", "pod-c")
	if a := m.launched(mk, 0); a == nil || !fits(m) {
		t.Errorf("failed launch: activated %v, fits %v; want the agent back at once", a != nil, fits(m))
	}

	// The same epoch resynced keeps an unanswered launch; another epoch,
	// or a watch that ends, drops it.
	mk, _ = m.launching("node-1", "pod-d")
	m.apply(snapshotEvent("e1", agentEvent(9, 4)))
	if fits(m) {
		t.Error("a resync of the same epoch dropped a launch not answered yet")
	}
	m.apply(snapshotEvent("e2", agentEvent(1, 4)))
	if !fits(m) || m.launchCount() != 0 {
		t.Errorf("snapshot of a new epoch: fits %v, %d launches awaited; want the agent back and none", fits(m), m.launchCount())
	}
	if a := m.launched(mk, 10); a != nil || !fits(m) {
		t.Error("the answer to a launch of the old epoch marked the agent again")
	}
	m.launching("node-1", "pod-e")
	m.disconnected(errors.New("stream broke"))
	if n := m.launchCount(); n != 0 {
		t.Errorf("after a disconnect: %d launches awaited, want none", n)
	}
}
