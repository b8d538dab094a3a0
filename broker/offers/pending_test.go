package offers

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// TestDeclinableHoldsOffersForPendingPods: an offer a pending pod could use
// is not declined at DeclineAfter but at HoldWhilePending; an offer no
// pending pod could use (too small, another role, no room beside the
// executor the first pod must start), or one held while nothing is pending
// or with holding off, is declined at DeclineAfter as always.
func TestDeclinableHoldsOffersForPendingPods(t *testing.T) {
	const declineAfter, hold = 5 * time.Second, 30 * time.Second
	onRole := func(d podresources.Demand, roles ...string) podresources.Demand { d.Roles = roles; return d }
	for _, tc := range []struct {
		name    string
		hold    time.Duration
		pending []podresources.Demand
		offered podresources.Resources
		held    bool
	}{
		{name: "a pending pod fits", hold: hold, pending: []podresources.Demand{demand(1, 256)}, offered: res(2, 1024), held: true},
		{name: "one of several pending pods fits", hold: hold, pending: []podresources.Demand{demand(8, 256), onRole(demand(1, 256), "*", "analytics")}, offered: res(2, 1024), held: true},
		{name: "the pending pod is too big", hold: hold, pending: []podresources.Demand{demand(4, 256)}, offered: res(2, 1024)},
		{name: "the pending pod may use another role only", hold: hold, pending: []podresources.Demand{onRole(demand(1, 256), "analytics")}, offered: res(2, 1024)},
		{name: "the pending pod does not fit beside the executor", hold: hold, pending: []podresources.Demand{demand(1.5, 256)}, offered: res(2, 1024)},
		{name: "the pending pod's host port is not offered", hold: hold, pending: []podresources.Demand{{Scalars: demand(1, 256).Scalars, HostPorts: []uint64{8080}}}, offered: res(2, 1024, podresources.Range{Begin: 31000, End: 32000})},
		{name: "nothing pending", hold: hold, offered: res(2, 1024)},
		{name: "holding off", hold: 0, pending: []podresources.Demand{demand(1, 256)}, offered: res(2, 1024)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, clk := newTestCache(Config{Executor: res(1, 64), DeclineAfter: declineAfter, HoldWhilePending: tc.hold})
			c.SetPendingDemands(tc.pending)
			c.Add(mkOffer("o1", "a1", "node-1", "*", tc.offered))
			clk.Step(declineAfter)
			d := c.Declinable()
			if !tc.held {
				if !reflect.DeepEqual(d.OfferIDs, []string{"o1"}) || d.Held != 0 {
					t.Fatalf("at decline-after: declined %v, %d held; want o1 declined", d.OfferIDs, d.Held)
				}
				return
			}
			if len(d.OfferIDs) != 0 || d.Held != 1 {
				t.Fatalf("at decline-after: declined %v, %d held; want o1 held for the pending pod", d.OfferIDs, d.Held)
			}
			if v, _ := c.Agent("a1"); v.Available["*"].CPUs != 1000 {
				t.Errorf("held offer's agent view %v, want its cpus offered to the scheduler", v.Available)
			}
			clk.Step(hold - declineAfter - time.Millisecond)
			if d := c.Declinable(); len(d.OfferIDs) != 0 || d.Held != 1 {
				t.Fatalf("just before the hold bound: declined %v, %d held; want o1 still held", d.OfferIDs, d.Held)
			}
			clk.Step(time.Millisecond)
			if d := c.Declinable(); !reflect.DeepEqual(d.OfferIDs, []string{"o1"}) || d.Held != 0 {
				t.Fatalf("at the hold bound: declined %v, %d held; want o1 declined however long pods wait", d.OfferIDs, d.Held)
			}
			checkInvariants(t, c)
		})
	}
}

// TestHeldOffersDeclinedOnceNothingIsPending: an offer held for a pending
// pod goes back as soon as no pod is pending (SetPendingDemands with none),
// not at the hold bound.
func TestHeldOffersDeclinedOnceNothingIsPending(t *testing.T) {
	c, clk := newTestCache(Config{DeclineAfter: 5 * time.Second, HoldWhilePending: 30 * time.Second})
	c.SetPendingDemands([]podresources.Demand{demand(1, 256)})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(2, 1024)))
	clk.Step(6 * time.Second)
	if d := c.Declinable(); len(d.OfferIDs) != 0 {
		t.Fatalf("declined %v while a pod that fits is pending", d.OfferIDs)
	}
	c.SetPendingDemands(nil)
	if d := c.Declinable(); !reflect.DeepEqual(d.OfferIDs, []string{"o1"}) {
		t.Fatalf("declined %v once nothing is pending, want o1", d.OfferIDs)
	}
}

// TestHeldWhileTheRestFitsAPendingPod: whether to hold is decided on what is
// left of the agent's offers for a new pod, reservations taken off, as
// Reserve sees it: a pending pod that fits in the whole agent but not beside
// its reservation holds nothing, and the offer the reservation does not need
// is declined at DeclineAfter.
func TestHeldWhileTheRestFitsAPendingPod(t *testing.T) {
	for _, tc := range []struct {
		pending  float64
		declined []string
		held     int
	}{
		{pending: 1, held: 2},
		{pending: 1.5, declined: []string{"o1"}},
	} {
		c, clk := newTestCache(Config{DeclineAfter: 5 * time.Second, HoldWhilePending: 30 * time.Second})
		c.SetPendingDemands([]podresources.Demand{demand(tc.pending, 256)})
		c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 512)))
		c.Add(mkOffer("o2", "a1", "node-1", "*", res(1, 512)))
		if _, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(1, 256), TTL: time.Minute}); err != nil {
			t.Fatal(err)
		}
		clk.Step(5 * time.Second)
		if d := c.Declinable(); !reflect.DeepEqual(d.OfferIDs, tc.declined) || d.Held != tc.held {
			t.Errorf("pending pod of %v cpus beside a reservation of 1 of 2: declined %v, %d held; want %v, %d held", tc.pending, d.OfferIDs, d.Held, tc.declined, tc.held)
		}
		checkInvariants(t, c)
	}
}

// TestManyPendingDemandsNeverDeclineWhatOneFits: past the demands tried one
// by one, they are merged into floors that still fit wherever one of them
// does.
func TestManyPendingDemandsNeverDeclineWhatOneFits(t *testing.T) {
	var ds []podresources.Demand
	for i := range 3 * maxPendingDemands {
		d := demand(float64(4+i), 256)
		if i%2 == 0 {
			d.Roles = []string{"analytics"}
		}
		ds = append(ds, d)
	}
	fits := demand(1, 2048)
	fits.Roles = []string{"*"}
	ds = append(ds, fits)
	if got := reduceDemands(ds, podresources.DefaultPodScalars); len(got) > maxPendingDemands {
		t.Fatalf("%d demands kept, want at most %d", len(got), maxPendingDemands)
	}
	c, clk := newTestCache(Config{DeclineAfter: 5 * time.Second, HoldWhilePending: 30 * time.Second})
	c.SetPendingDemands(ds)
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(2, 4096)))
	clk.Step(5 * time.Second)
	if d := c.Declinable(); len(d.OfferIDs) != 0 || d.Held != 1 {
		t.Fatalf("declined %v, %d held; want o1 held for the one pending pod that fits", d.OfferIDs, d.Held)
	}
}

// BenchmarkDeclinableHolding measures one Declinable sweep (the broker runs
// one a second) over 10,000 agents whose offers are all past DeclineAfter and
// held for pending pods: pods without host ports (the common case), and pods
// with ports only, which need range arithmetic.
func BenchmarkDeclinableHolding(b *testing.B) {
	for _, bc := range []struct {
		name    string
		pending []podresources.Demand
	}{
		{name: "without-ports", pending: []podresources.Demand{
			{Scalars: demand(64, 1024).Scalars}, demand(2, 4096), {Scalars: demand(1, 1024).Scalars, HostPorts: []uint64{80}}}},
		{name: "ports-only", pending: []podresources.Demand{
			{Scalars: demand(1, 1024).Scalars, HostPorts: []uint64{80}}, {Scalars: demand(0.5, 256).Scalars, WildcardPorts: 2}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			clk := clocktesting.NewFakeClock(t0)
			c := New(Config{Clock: clk, Executor: res(0.1, 32), DeclineAfter: 5 * time.Second, HoldWhilePending: time.Hour})
			offers := make([]mesos.Offer, 0, benchAgents)
			for i := range benchAgents {
				offers = append(offers, mkOffer(fmt.Sprintf("o%d", i), fmt.Sprintf("a%d", i), fmt.Sprintf("node-%05d", i), "*",
					res(32, 128*1024, podresources.Range{Begin: 31000, End: 32000})))
			}
			c.Add(offers...)
			c.SetPendingDemands(bc.pending)
			clk.Step(6 * time.Second)
			for b.Loop() {
				if d := c.Declinable(); d.Held != benchAgents {
					b.Fatalf("%d held, want every offer", d.Held)
				}
			}
		})
	}
}
