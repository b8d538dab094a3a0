package offers

import (
	"context"

	"errors"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/k8sm/k8sm/pkg/podresources"
)

func TestReserveShrinksTheView(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(4, 4096, podresources.Range{Begin: 31000, End: 31009})))

	r, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: podresources.Demand{Scalars: res(1.5, 1000).Scalars, HostPorts: []uint64{31005}, WildcardPorts: 2}})
	if err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if r.AgentID != "a1" || r.Role != "*" {
		t.Errorf("reservation on %s role %s, want a1 role *", r.AgentID, r.Role)
	}
	if !reflect.DeepEqual(r.WildcardPorts, []uint64{31000, 31001}) {
		t.Errorf("wildcard ports %v, want the two lowest free ones", r.WildcardPorts)
	}
	v, _ := c.Agent("a1")
	want := res(2.5, 3096, podresources.Range{Begin: 31002, End: 31004}, podresources.Range{Begin: 31006, End: 31009})
	if got := v.Available["*"]; !reflect.DeepEqual(got, want) {
		t.Errorf("available = %v, want %v", got, want)
	}
	checkInvariants(t, c)

	if !c.Unreserve(r.ID, "") {
		t.Fatalf("Unreserve found nothing")
	}
	v, _ = c.Agent("a1")
	if got, want := v.Available["*"], res(4, 4096, podresources.Range{Begin: 31000, End: 31009}); !reflect.DeepEqual(got, want) {
		t.Errorf("after Unreserve available = %v, want %v", got, want)
	}
	if c.Unreserve(r.ID, "") {
		t.Errorf("second Unreserve released something")
	}
	if _, err := c.Get(r.ID); !errors.Is(err, ErrReleased) {
		t.Errorf("Get after Unreserve: %v, want ErrReleased", err)
	}
}

func TestReserveErrors(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(0.5, 4096)))
	tests := []struct {
		name    string
		req     ReserveRequest
		is      error
		message string
	}{
		{"negative cpus", ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(-1, 0)}, ErrInvalid, "invalid request: pod default/pod-1: negative cpus requested"},
		{"no pod uid", ReserveRequest{NodeName: "node-1", Demand: demand(0.1, 0)}, ErrInvalid, "invalid request: pod uid is empty"},
		{"negative ttl", ReserveRequest{Pod: podRef(1), NodeName: "node-1", TTL: -time.Second}, ErrInvalid, "invalid request: negative TTL -1s"},
		{"unknown node", ReserveRequest{Pod: podRef(1), NodeName: "node-9", Demand: demand(0.1, 0)}, ErrUnknownAgent, `unknown agent: node "node-9" is not a Mesos agent that has offered resources to this framework`},
		{"unknown agent id", ReserveRequest{Pod: podRef(1), AgentID: "a9", Demand: demand(0.1, 0)}, ErrUnknownAgent, `unknown agent: no agent "a9" has offered resources to this framework`},
		{"node and agent disagree", ReserveRequest{Pod: podRef(1), AgentID: "a1", NodeName: "node-2"}, ErrInvalid, `invalid request: agent a1 is node "node-1", not "node-2"`},
		{"too big", ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(2, 128)}, ErrInsufficient, "agent node-1 (a1): 0.5 cpus offered, 2 requested"},
		{"wrong role", ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: podresources.Demand{Roles: []string{"web"}}}, ErrInsufficient, "agent node-1 (a1): no resources offered for role web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Reserve(tt.req)
			if !errors.Is(err, tt.is) {
				t.Fatalf("err = %v, want %v", err, tt.is)
			}
			if err.Error() != tt.message {
				t.Errorf("message = %q, want %q", err.Error(), tt.message)
			}
		})
	}
	checkInvariants(t, c)
}

func TestRacingReservesHaveOneWinner(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 1024, podresources.Range{Begin: 8080, End: 8080})))
	const racers = 64
	var wg sync.WaitGroup
	errs := make([]error, racers)
	start := make(chan struct{})
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = c.Reserve(ReserveRequest{Pod: podRef(i), NodeName: "node-1", Demand: podresources.Demand{Scalars: res(0.25, 10).Scalars, HostPorts: []uint64{8080}}})
		}()
	}
	close(start)
	wg.Wait()
	winners := 0
	for _, err := range errs {
		switch {
		case err == nil:
			winners++
		case !errors.Is(err, ErrInsufficient):
			t.Errorf("loser got %v, want ErrInsufficient", err)
		}
	}
	if winners != 1 {
		t.Errorf("%d reservations of host port 8080 succeeded, want 1", winners)
	}
	checkInvariants(t, c)
}

func TestReserveAgainReplacesThePodsReservation(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 1024)), mkOffer("o2", "a2", "node-2", "*", res(1, 1024)))
	first, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(1, 0)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-2", Demand: demand(1, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(first.ID); !errors.Is(err, ErrReleased) {
		t.Errorf("first reservation: %v, want ErrReleased", err)
	}
	if v, _ := c.Agent("a1"); v.Available["*"].CPUs != 1000 {
		t.Errorf("node-1 still has %v available, want its cpu back", v.Available["*"])
	}
	checkInvariants(t, c)
}

func TestReservationExpires(t *testing.T) {
	c, clk := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 1024)))
	r, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(1, 0), TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Expires != t0.Add(10*time.Second) {
		t.Errorf("expires %v, want now+10s", r.Expires)
	}
	clk.Step(9 * time.Second)
	if got := c.Expire(); len(got) != 0 {
		t.Errorf("expired early: %v", got)
	}
	clk.Step(time.Second)
	l, err := c.Take(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(l.Failed[r.ID], ErrExpired) || len(l.Tasks) != 0 {
		t.Errorf("Take of an expired reservation: failed=%v tasks=%d, want ErrExpired and none", l.Failed, len(l.Tasks))
	}
	if v, _ := c.Agent("a1"); v.Available["*"].CPUs != 1000 {
		t.Errorf("expired reservation still holds cpus: %v", v.Available["*"])
	}
	if _, err := c.Reserve(ReserveRequest{Pod: podRef(2), NodeName: "node-1", Demand: demand(1, 0)}); err != nil {
		t.Errorf("resources of the expired reservation are not free: %v", err)
	}
}

func TestTTLIsCapped(t *testing.T) {
	c, _ := newTestCache(Config{MaxTTL: time.Minute, DefaultTTL: 7 * time.Second})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 1024)))
	r, _ := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", TTL: time.Hour})
	if r.Expires != t0.Add(time.Minute) {
		t.Errorf("an hour's TTL expires at %v, want capped to a minute", r.Expires)
	}
	r, _ = c.Reserve(ReserveRequest{Pod: podRef(2), NodeName: "node-1"})
	if r.Expires != t0.Add(7*time.Second) {
		t.Errorf("default TTL expires at %v, want 7s", r.Expires)
	}
}

func TestRescindLosesTheYoungestReservations(t *testing.T) {
	c, clk := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 1024)))
	clk.Step(time.Second)
	c.Add(mkOffer("o2", "a1", "node-1", "*", res(1, 1024)))
	older, _ := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(1, 0)})
	younger, _ := c.Reserve(ReserveRequest{Pod: podRef(2), NodeName: "node-1", Demand: demand(1, 0)})
	lost := c.Rescind("o1")
	if len(lost) != 1 || lost[0].ID != younger.ID {
		t.Fatalf("lost %v, want only the younger reservation", lost)
	}
	if _, err := c.Get(older.ID); err != nil {
		t.Errorf("older reservation: %v", err)
	}
	if _, err := c.Get(younger.ID); !errors.Is(err, ErrLost) {
		t.Errorf("younger reservation: %v, want ErrLost", err)
	}
	checkInvariants(t, c)
}

func TestRemoveAgent(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 1024)))
	r, _ := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(1, 0)})
	if lost := c.RemoveAgent("a1"); len(lost) != 1 {
		t.Errorf("lost %v, want the agent's reservation", lost)
	}
	if _, err := c.Get(r.ID); !errors.Is(err, ErrLost) {
		t.Errorf("Get: %v, want ErrLost", err)
	}
	if _, err := c.Reserve(ReserveRequest{Pod: podRef(2), NodeName: "node-1"}); !errors.Is(err, ErrUnknownAgent) {
		t.Errorf("Reserve on removed agent: %v, want ErrUnknownAgent", err)
	}
}

func TestTakeBatchesWithExecutor(t *testing.T) {
	exec := res(0.1, 32)
	c, _ := newTestCache(Config{Executor: exec})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(2, 1024, podresources.Range{Begin: 31000, End: 31010})))
	c.Add(mkOffer("o2", "a1", "node-1", "*", res(4, 0)))
	v, _ := c.Agent("a1")
	if got := v.Available["*"].CPUs; got != 5900 {
		t.Errorf("available cpus %v before the executor runs, want 5.9 (6 minus the executor's 0.1)", got)
	}
	a, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: podresources.Demand{Scalars: res(3, 256).Scalars, WildcardPorts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Reserve(ReserveRequest{Pod: podRef(2), NodeName: "node-1", Demand: podresources.Demand{Scalars: res(1, 256).Scalars, HostPorts: []uint64{31010}}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Take(a.ID, b.ID, "nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(l.Failed["nonexistent"], ErrUnknownReservation) || len(l.Failed) != 1 {
		t.Errorf("failed = %v, want only the unknown id", l.Failed)
	}
	if !reflect.DeepEqual(l.OfferIDs, []string{"o1", "o2"}) {
		t.Errorf("offers %v, want both", l.OfferIDs)
	}
	if len(l.Tasks) != 2 || l.Tasks[0].ID != a.ID || l.Tasks[1].ID != b.ID {
		t.Fatalf("tasks %v, want a then b", l.Tasks)
	}
	if got := podresources.FromMesos(l.Executor["*"])["*"]; !reflect.DeepEqual(got, exec) {
		t.Errorf("executor resources %v, want %v", got, exec)
	}
	if got := podresources.FromMesos(l.Tasks[0].Resources)["*"]; !reflect.DeepEqual(got, a.Claim) {
		t.Errorf("task a resources %v, want its claim %v", got, a.Claim)
	}
	if got := podresources.FromMesos(l.Tasks[1].Resources)["*"]; !reflect.DeepEqual(got, res(1, 256, podresources.Range{Begin: 31010, End: 31010})) {
		t.Errorf("task b resources %v", got)
	}
	// What the ACCEPT returns to Mesos: 6-0.1-3-1 cpus, 1024-32-512 mem, the unclaimed ports.
	want := res(1.9, 480, podresources.Range{Begin: 31001, End: 31009})
	if got := podresources.FromMesos(l.Remainder)["*"]; !reflect.DeepEqual(got, want) {
		t.Errorf("remainder %v, want %v", got, want)
	}
	if _, err := c.Get(a.ID); !errors.Is(err, ErrLaunched) {
		t.Errorf("Get after Take: %v, want ErrLaunched", err)
	}
	v, _ = c.Agent("a1")
	if !reflect.DeepEqual(v.ExecutorRoles, []string{"*"}) || len(v.Available) != 0 {
		t.Errorf("after launch: executor roles %v available %v, want [*] and nothing offered", v.ExecutorRoles, v.Available)
	}
	c.Add(mkOffer("o3", "a1", "node-1", "*", res(1, 100)))
	if v, _ = c.Agent("a1"); v.Available["*"].CPUs != 1000 {
		t.Errorf("with the executor running the view still charges it: %v", v.Available["*"])
	}
	checkInvariants(t, c)
}

func TestTakeUsesFewestOffersAndKeepsOtherReservations(t *testing.T) {
	c, clk := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 512)))
	clk.Step(time.Second)
	c.Add(mkOffer("o2", "a1", "node-1", "*", res(1, 512)))
	a, _ := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(1, 512)})
	b, _ := c.Reserve(ReserveRequest{Pod: podRef(2), NodeName: "node-1", Demand: demand(1, 512)})
	l, err := c.Take(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.OfferIDs, []string{"o1"}) || len(l.Lost) != 0 {
		t.Fatalf("offers %v lost %v, want only o1 and nothing lost", l.OfferIDs, l.Lost)
	}
	l, err = c.Take(b.ID)
	if err != nil || len(l.Tasks) != 1 || !reflect.DeepEqual(l.OfferIDs, []string{"o2"}) {
		t.Fatalf("second Take: %v %+v", err, l)
	}
	checkInvariants(t, c)
}

func TestTakeLosesReservationsSharingTheConsumedOffer(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(2, 1024)))
	a, _ := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: demand(1, 0)})
	b, _ := c.Reserve(ReserveRequest{Pod: podRef(2), NodeName: "node-1", Demand: demand(1, 0)})
	l, err := c.Take(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Lost) != 1 || l.Lost[0].ID != b.ID {
		t.Fatalf("lost %v, want b: the ACCEPT returns its share of the offer to Mesos", l.Lost)
	}
	if _, err := c.Get(b.ID); !errors.Is(err, ErrLost) {
		t.Errorf("Get(b): %v, want ErrLost", err)
	}
	checkInvariants(t, c)
}

func TestDeclinable(t *testing.T) {
	c, clk := newTestCache(Config{DeclineAfter: 5 * time.Second, RefuseSeconds: 30})
	c.Add(mkOffer("idle", "a1", "node-1", "*", res(1, 512)))
	c.Add(mkOffer("backing", "a2", "node-2", "*", res(1, 512)))
	useless := mkOffer("useless", "a3", "node-3", "*", res(1, 512))
	for i := range useless.Resources {
		useless.Resources[i].Revocable = &mesos.Resource_RevocableInfo{}
	}
	c.Add(useless)
	c.Add(mkOffer("spare", "a2", "node-2", "*", res(1, 512)))
	if _, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-2", Demand: demand(1, 512), TTL: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if d := c.Declinable(); !reflect.DeepEqual(d.OfferIDs, []string{"useless"}) {
		t.Errorf("declined %v at once, want only the offer with nothing usable", d.OfferIDs)
	}
	clk.Step(5 * time.Second)
	d := c.Declinable()
	if len(d.OfferIDs) != 2 || d.RefuseSeconds != 30 {
		t.Fatalf("declined %v (refuse %v), want the idle offer and one of node-2's two", d.OfferIDs, d.RefuseSeconds)
	}
	if d.OfferIDs[0] != "backing" || d.OfferIDs[1] != "idle" {
		t.Errorf("declined %v, want the older of node-2's offers and the idle one", d.OfferIDs)
	}
	v, _ := c.Agent("a2")
	if len(v.Available) != 1 || v.Available["*"].CPUs != 0 {
		t.Errorf("node-2 view after decline %v: the reserved cpu must stay", v.Available)
	}
	checkInvariants(t, c)
}

func TestWatchSnapshotThenDeltas(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(mkOffer("o1", "a1", "node-1", "*", res(1, 512)))
	w := c.Watch()
	defer w.Stop()
	ctx := context.Background()
	ev, err := w.Next(ctx)
	if err != nil || ev.Type != EventSnapshot || ev.Agents.Len() != 1 || ev.Agents.View(0).Hostname != "node-1" {
		t.Fatalf("first event %+v %v, want a snapshot of node-1", ev, err)
	}
	snapVersion := ev.Version
	c.Add(mkOffer("o2", "a2", "node-2", "*", res(2, 512)))
	ev, _ = w.Next(ctx)
	if ev.Type != EventUpdated || ev.Agent.Hostname != "node-2" || ev.Version <= snapVersion || ev.Agent.Available["*"].CPUs != 2000 {
		t.Errorf("second event %+v, want node-2 with 2 cpus after the snapshot", ev)
	}
	if _, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-2", Demand: demand(0.5, 0)}); err != nil {
		t.Fatal(err)
	}
	ev, _ = w.Next(ctx)
	if ev.Type != EventUpdated || ev.Agent.Available["*"].CPUs != 1500 {
		t.Errorf("after Reserve %+v, want node-2 with 1.5 cpus", ev)
	}
	c.RemoveAgent("a1")
	ev, _ = w.Next(ctx)
	if ev.Type != EventRemoved || ev.Removed.Hostname != "node-1" {
		t.Errorf("after RemoveAgent %+v, want node-1 removed", ev)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := w.Next(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Next with nothing pending and a cancelled context: %v", err)
	}
}

func TestSlowWatcherIsResynced(t *testing.T) {
	c, _ := newTestCache(Config{WatchBuffer: 2})
	w := c.Watch()
	defer w.Stop()
	ctx := context.Background()
	if ev, _ := w.Next(ctx); ev.Type != EventSnapshot {
		t.Fatalf("first event %v, want snapshot", ev.Type)
	}
	for i, host := range []string{"n1", "n2", "n3", "n4", "n5"} {
		c.Add(mkOffer(host, "a"+host, host, "*", res(float64(i+1), 0)))
	}
	// Two deltas fit the buffer; the third overflowed it, so the watcher gets
	// a fresh snapshot and no stale delta.
	ev, _ := w.Next(ctx)
	if ev.Type != EventSnapshot {
		t.Fatalf("after overflow got %v, want a snapshot", ev.Type)
	}
	_, version := c.Snapshot()
	if ev.Agents.Len() != 5 || ev.Version != version {
		t.Errorf("resync snapshot has %d agents at version %d, want 5 at %d", ev.Agents.Len(), ev.Version, version)
	}
	c.Add(mkOffer("n6", "an6", "n6", "*", res(1, 0)))
	if ev, _ = w.Next(ctx); ev.Type != EventUpdated || ev.Version != version+1 {
		t.Errorf("after resync got %v at %d, want an update at %d", ev.Type, ev.Version, version+1)
	}
}
