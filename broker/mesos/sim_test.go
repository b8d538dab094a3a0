package mesos_test

import (
	"context"
	"errors"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	brokerzk "github.com/k8sm/k8sm/broker/zk"
	"github.com/k8sm/k8sm/hack/cluster/zktesting"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
)

func startSim(t *testing.T, cfg mesossim.Config) *mesossim.Sim {
	t.Helper()
	cfg.Master = master.Config{HeartbeatInterval: 200 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: 100 * time.Millisecond,
		Credentials: cfg.Master.Credentials, TLS: cfg.Master.TLS}
	cfg.WorkDir = t.TempDir()
	if len(cfg.Agents) == 0 {
		res, err := mesossim.ParseResources("cpus:4;mem:4096;disk:10000;ports:[31000-32000]")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Agents = []agent.Config{{Resources: res, Hollow: true, StatusUpdateRetryInterval: 200 * time.Millisecond}}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := mesossim.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); cancel() })
	return s
}

func startZK(t *testing.T) string { return zktesting.Start(t) }

func framework() mesos.FrameworkInfo {
	ft := 3600.0
	cp := true
	return mesos.FrameworkInfo{
		User: "root", Name: "k8sm-test", FailoverTimeout: &ft, Checkpoint: &cp,
		Roles:        []string{"*"},
		Capabilities: []mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE}},
	}
}

// TestRestartKeepsFrameworkID: a broker that restarts subscribes with the
// framework id it stored and Mesos still knows one framework.
func TestRestartKeepsFrameworkID(t *testing.T) {
	for _, mt := range []encoding.MediaType{codecs.MediaTypeProtobuf, codecs.MediaTypeJSON} {
		t.Run(string(mt), func(t *testing.T) {
			s := startSim(t, mesossim.Config{})
			ctx := testCtx(t)
			store := &brokermesos.MemoryIDStore{}
			cfg := brokermesos.Config{Detector: brokermesos.StaticMaster(s.MasterURL()), Framework: framework(), Store: store, MediaType: string(mt)}

			first, stop := runClient(t, ctx, cfg)
			rec := first.rec
			sub := rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
			id := sub.GetSubscribed().FrameworkID.Value
			if ev := rec.next(t, ctx, scheduler.Event_OFFERS); len(ev.GetOffers().Offers) == 0 {
				t.Fatal("OFFERS without offers")
			}
			stop()

			second, _ := runClient(t, ctx, cfg)
			again := second.rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
			if got := again.GetSubscribed().FrameworkID.Value; got != id {
				t.Fatalf("restarted client subscribed as framework %s, want %s", got, id)
			}
			if n := len(s.Leader().State()["frameworks"].([]map[string]any)); n != 1 {
				t.Errorf("master knows %d frameworks, want 1", n)
			}
		})
	}
}

type running struct {
	c   *brokermesos.Client
	rec *recorder
}

func runClient(t *testing.T, ctx context.Context, cfg brokermesos.Config) (running, func()) {
	t.Helper()
	c, err := brokermesos.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, rec) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return running{c, rec}, stop
}

// TestZooKeeperMasterFailover: the client finds the leader through
// ZooKeeper, follows a master failover and keeps its framework id, which it
// stored in ZooKeeper so that a broker restarted on a new session reuses it.
func TestZooKeeperMasterFailover(t *testing.T) {
	zkAddr := startZK(t)
	s := startSim(t, mesossim.Config{Masters: 2, ZK: "zk://" + zkAddr + "/mesos"})
	ctx := testCtx(t)

	newBroker := func() (running, func()) {
		sess, err := brokerzk.Connect(ctx, []string{zkAddr}, 0)
		if err != nil {
			t.Fatal(err)
		}
		det := brokerzk.NewMasterDetector(sess, "/mesos")
		dctx, cancel := context.WithCancel(ctx)
		go det.Run(dctx)
		r, stop := runClient(t, ctx, brokermesos.Config{
			Detector: det, Framework: framework(), Store: brokerzk.NewFrameworkIDStore(sess, "/k8sm"),
			MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond,
		})
		return r, func() { stop(); cancel(); sess.Close() }
	}

	b, stop := newBroker()
	id := b.rec.next(t, ctx, scheduler.Event_SUBSCRIBED).GetSubscribed().FrameworkID.Value
	before := s.Leader().ID()
	if err := s.FailoverMaster(); err != nil {
		t.Fatal(err)
	}
	ev := b.rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
	if got := ev.GetSubscribed().FrameworkID.Value; got != id {
		t.Fatalf("after master failover subscribed as %s, want %s", got, id)
	}
	if l := s.Leader(); l == nil || l.ID() == before {
		t.Fatalf("the leader did not change")
	}
	b.rec.next(t, ctx, scheduler.Event_OFFERS)
	stop()

	b2, _ := newBroker()
	if got := b2.rec.next(t, ctx, scheduler.Event_SUBSCRIBED).GetSubscribed().FrameworkID.Value; got != id {
		t.Fatalf("a broker restarted on a new ZooKeeper session subscribed as %s, want %s", got, id)
	}
}

// TestAgentsListsTheMastersAgents: the operator API's GET_AGENTS, on the
// subscription's master, in both encodings, shows every agent with its
// hostname; before a subscription there is no master to ask.
func TestAgentsListsTheMastersAgents(t *testing.T) {
	for _, mt := range []encoding.MediaType{codecs.MediaTypeProtobuf, codecs.MediaTypeJSON} {
		t.Run(string(mt), func(t *testing.T) {
			s := startSim(t, mesossim.Config{})
			ctx := testCtx(t)
			c, err := brokermesos.New(brokermesos.Config{Detector: brokermesos.StaticMaster(s.MasterURL()), Framework: framework(), MediaType: string(mt)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Agents(ctx); !errors.Is(err, brokermesos.ErrNotSubscribed) {
				t.Errorf("Agents before subscribing: %v, want ErrNotSubscribed", err)
			}
			rec := newRecorder()
			ctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); _ = c.Run(ctx, rec) }()
			t.Cleanup(func() { cancel(); <-done })
			rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
			agents, err := c.Agents(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(agents) != 1 || !agents[0].Active || agents[0].AgentInfo.GetID().GetValue() != s.Agent(0).ID() || agents[0].AgentInfo.Hostname == "" {
				t.Errorf("agents %+v, want the one active agent %s", agents, s.Agent(0).ID())
			}
		})
	}
}
