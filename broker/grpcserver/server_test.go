package grpcserver

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/k8sm/k8sm/broker/launch"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

type fakeLauncher struct {
	mu       sync.Mutex
	launches []*offers.Launch
	pods     []map[string]taskinfo.PodData
	kills    []string
	fail     error
}

func (f *fakeLauncher) Launch(_ context.Context, l *offers.Launch, pods map[string]taskinfo.PodData) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.launches = append(f.launches, l)
	f.pods = append(f.pods, pods)
	return nil
}

func (f *fakeLauncher) PodTasks(types.UID) []string { return nil }
func (f *fakeLauncher) TaskAgent(string) string     { return "" }

// Settle: no ACCEPT here ends without an answer.
func (f *fakeLauncher) Settle(context.Context, string, []string) (map[string]bool, error) {
	return nil, nil
}

func (f *fakeLauncher) Kill(_ context.Context, taskID, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, taskID)
	return f.fail
}

type env struct {
	cache    *offers.Cache
	clock    *clocktesting.FakeClock
	launcher *fakeLauncher
	server   *Server
	client   brokerv1.BrokerClient
	conn     *grpc.ClientConn
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	cache := offers.New(offers.Config{Clock: clk})
	l := &fakeLauncher{}
	s := New(cache, launch.New(cache, l, launch.Options{Clock: clk, BatchWindow: time.Second}))
	s.SetServing(true)
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		g.Stop()
	})
	return &env{cache: cache, clock: clk, launcher: l, server: s, client: brokerv1.NewBrokerClient(conn), conn: conn}
}

func offer(id, agent, host string, cpus, mem float64) mesos.Offer {
	r := podresources.Resources{Scalars: podresources.Scalars{CPUs: podresources.MilliFromFloat(cpus), MemMB: podresources.MilliFromFloat(mem)},
		Ports: podresources.NewRanges(podresources.Range{Begin: 31000, End: 31009})}
	return mesos.Offer{ID: mesos.OfferID{Value: id}, AgentID: mesos.AgentID{Value: agent}, Hostname: host, Resources: podresources.ToMesos(r, "*")}
}

func pbPod(n string) *brokerv1.PodRef {
	return &brokerv1.PodRef{Uid: "uid-" + n, Namespace: "default", Name: n}
}

func podJSON(t *testing.T, n string) []byte {
	t.Helper()
	b, err := json.Marshal(&v1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "default", UID: types.UID("uid-" + n)},
		Spec:       v1.PodSpec{NodeName: "node-1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantCode(t *testing.T, err error, code codes.Code, contains string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code {
		t.Fatalf("code = %v (%v), want %v", st.Code(), err, code)
	}
	if !strings.Contains(st.Message(), contains) {
		t.Errorf("message %q does not say %q", st.Message(), contains)
	}
}

func TestHealth(t *testing.T) {
	e := newEnv(t)
	resp, err := healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: brokerapi.ServiceName})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v %v, want SERVING", resp, err)
	}
	e.server.SetServing(false)
	resp, _ = healthpb.NewHealthClient(e.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: brokerapi.ServiceName})
	if resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("after SetServing(false) health = %v", resp.GetStatus())
	}
}

// TestReserveOnlyWhileServing: a replica that does not serve (a standby, a
// leader that lost ZooKeeper or its Mesos subscription) refuses Reserve,
// whatever offers its cache still holds: the pod is scheduled against the
// leader's view, not a stale one.
func TestReserveOnlyWhileServing(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 1, 1024))
	req := &brokerv1.ReserveRequest{Pod: pbPod("p"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 0.5}}
	e.server.SetServing(false)
	_, err := e.client.Reserve(context.Background(), req)
	wantCode(t, err, codes.Unavailable, "not serving")
	e.server.SetServing(true)
	if _, err := e.client.Reserve(context.Background(), req); err != nil {
		t.Errorf("serving again, Reserve: %v", err)
	}
}

func TestReserveErrorCodes(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 0.5, 1024))
	ctx := context.Background()
	tests := []struct {
		name     string
		req      *brokerv1.ReserveRequest
		code     codes.Code
		contains string
	}{
		{"negative cpus", &brokerv1.ReserveRequest{Pod: pbPod("p"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: -1}}, codes.InvalidArgument, "negative cpus requested"},
		{"NaN memory", &brokerv1.ReserveRequest{Pod: pbPod("p"), NodeName: "node-1", Demand: &brokerv1.Demand{MemMb: nan()}}, codes.InvalidArgument, "mem = NaN"},
		{"negative wildcard ports", &brokerv1.ReserveRequest{Pod: pbPod("p"), NodeName: "node-1", Demand: &brokerv1.Demand{WildcardPorts: -2}}, codes.InvalidArgument, "negative number of wildcard ports"},
		{"negative ttl", &brokerv1.ReserveRequest{Pod: pbPod("p"), NodeName: "node-1", Ttl: durationpb.New(-time.Second)}, codes.InvalidArgument, "negative TTL"},
		{"no pod uid", &brokerv1.ReserveRequest{NodeName: "node-1"}, codes.InvalidArgument, "pod.uid is required"},
		{"unknown node", &brokerv1.ReserveRequest{Pod: pbPod("p"), NodeName: "node-7"}, codes.NotFound, `node "node-7" is not a Mesos agent`},
		{"unknown agent", &brokerv1.ReserveRequest{Pod: pbPod("p"), AgentId: "a7"}, codes.NotFound, `no agent "a7"`},
		{"too big", &brokerv1.ReserveRequest{Pod: pbPod("p"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 2}}, codes.ResourceExhausted, "0.5 cpus offered, 2 requested"},
		{"port not offered", &brokerv1.ReserveRequest{Pod: pbPod("p"), NodeName: "node-1", Demand: &brokerv1.Demand{HostPorts: []uint32{80}}}, codes.ResourceExhausted, "host ports [80-80] not offered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.Reserve(ctx, tt.req)
			wantCode(t, err, tt.code, tt.contains)
		})
	}
}

func nan() float64 {
	var zero float64
	return zero / zero
}

func TestTwoRacingReservesOneWinner(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 1, 1024))
	var wg sync.WaitGroup
	codesSeen := make([]codes.Code, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.client.Reserve(context.Background(), &brokerv1.ReserveRequest{Pod: pbPod(string(rune('a' + i))), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 1}})
			codesSeen[i] = status.Code(err)
		}()
	}
	wg.Wait()
	got := map[codes.Code]int{}
	for _, c := range codesSeen {
		got[c]++
	}
	if got[codes.OK] != 1 || got[codes.ResourceExhausted] != 1 {
		t.Errorf("outcomes %v, want one OK and one ResourceExhausted", codesSeen)
	}
}

func TestLaunchErrors(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 4, 1024))
	ctx := context.Background()
	reserve := func(n string, ttl time.Duration) *brokerv1.Reservation {
		resp, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: pbPod(n), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 1}, Ttl: durationpb.New(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetReservation()
	}

	_, err := e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: "nope", Pod: podJSON(t, "x")})
	wantCode(t, err, codes.NotFound, `unknown reservation "nope"`)

	r := reserve("a", 10*time.Second)
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: []byte("{not json")})
	wantCode(t, err, codes.InvalidArgument, "decoding the pod")
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podJSON(t, "b")})
	wantCode(t, err, codes.InvalidArgument, "belongs to pod uid uid-a")
	var unbound v1.Pod
	if err := json.Unmarshal(podJSON(t, "a"), &unbound); err != nil {
		t.Fatal(err)
	}
	unbound.Spec.NodeName = ""
	data, _ := json.Marshal(&unbound)
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: data})
	wantCode(t, err, codes.InvalidArgument, `reservation `+r.GetId()+` is on node "node-1", the pod sent is bound to ""`)

	e.clock.Step(11 * time.Second)
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podJSON(t, "a")})
	wantCode(t, err, codes.FailedPrecondition, "expired")

	r = reserve("c", time.Minute)
	if _, err := e.client.Unreserve(ctx, &brokerv1.UnreserveRequest{ReservationId: r.GetId()}); err != nil {
		t.Fatal(err)
	}
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podJSON(t, "c")})
	wantCode(t, err, codes.FailedPrecondition, "released")

	r = reserve("d", time.Minute)
	e.cache.Rescind("o1")
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podJSON(t, "d")})
	wantCode(t, err, codes.Aborted, "no longer hold it")
	if len(e.launcher.launches) != 0 {
		t.Errorf("failed launches reached Mesos: %d", len(e.launcher.launches))
	}
}

func TestLaunchBatchesOneAgent(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 4, 1024))
	ctx := context.Background()
	var ids []string
	for _, n := range []string{"a", "b"} {
		resp, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: pbPod(n), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 1, WildcardPorts: 1}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, resp.GetReservation().GetId())
	}
	// The first Launch waits for the second: both reservations of the agent
	// must go in one ACCEPT, since an ACCEPT consumes whole offers.
	var wg sync.WaitGroup
	resps := make([]*brokerv1.LaunchResponse, 2)
	errs := make([]error, 2)
	for i, n := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resps[i], errs[i] = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: ids[i], Pod: podJSON(t, n), PodContentType: "application/json"})
		}()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("launch %d: %v", i, errs[i])
		}
		if resps[i].GetBatchSize() != 2 || resps[i].GetAgentId() != "a1" {
			t.Errorf("launch %d: %v, want a batch of 2 on a1", i, resps[i])
		}
	}
	if want := "pod.uid-a." + ids[0]; resps[0].GetTaskId() != want {
		t.Errorf("task id %q, want %s: pod.<pod uid>.<attempt> (pkg/taskinfo)", resps[0].GetTaskId(), want)
	}
	if len(e.launcher.launches) != 1 {
		t.Fatalf("%d ACCEPTs, want 1", len(e.launcher.launches))
	}
	l := e.launcher.launches[0]
	if len(l.Tasks) != 2 || len(l.OfferIDs) != 1 {
		t.Errorf("ACCEPT of %v with %d tasks, want o1 with 2", l.OfferIDs, len(l.Tasks))
	}
	if p := e.launcher.pods[0][ids[1]]; p.Ref.Name != "b" || string(p.JSON) != string(podJSON(t, "b")) {
		t.Errorf("launcher got pod %+v for b, want its JSON as it was sent", p)
	}
	// A retry of a's launch gets a's task, not a second one.
	again, err := e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: ids[0], Pod: podJSON(t, "a")})
	if err != nil || again.GetTaskId() != resps[0].GetTaskId() || len(e.launcher.launches) != 1 {
		t.Errorf("retried launch of a: %v, %v after %d ACCEPTs; want task %s and one ACCEPT", again, err, len(e.launcher.launches), resps[0].GetTaskId())
	}
}

// TestLaunchAnswersTheVersionWithoutItsOffers: Launch answers with the
// agent's resource_version once the ACCEPT's offers left the view, the
// version from which the plugin's mirror may trust the agent again: the
// watch's event of the agent at that version no longer shows the accepted
// offer, and shows the one the ACCEPT left.
func TestLaunchAnswersTheVersionWithoutItsOffers(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 1, 1024))
	e.cache.Add(offer("o2", "a1", "node-1", 2, 1024))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, _ := watch(ctx, t, e)
	reserved, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: pbPod("a"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	launched, err := e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: reserved.GetReservation().GetId(), Pod: podJSON(t, "a")})
	if err != nil {
		t.Fatal(err)
	}
	if v := launched.GetResourceVersion(); v <= reserved.GetResourceVersion() {
		t.Fatalf("Launch answered resource_version %d, Reserve %d: want a later one, the take's", v, reserved.GetResourceVersion())
	}
	for {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		a := ev.GetUpdated()
		if a.GetResourceVersion() < launched.GetResourceVersion() {
			continue
		}
		if cpus := brokerapi.ByRoleFromProto(a.GetAvailable())["*"].CPUs; a.GetResourceVersion() != launched.GetResourceVersion() || cpus != 2000 {
			t.Errorf("watch event at version %d with %s cpus; want version %d with o2's 2 cpus (o1 accepted)", a.GetResourceVersion(), cpus, launched.GetResourceVersion())
		}
		return
	}
}

func TestLaunchFailureIsUnavailable(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 4, 1024))
	e.launcher.fail = errors.New("connection refused")
	ctx := context.Background()
	resp, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: pbPod("a"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 1}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: resp.GetReservation().GetId(), Pod: podJSON(t, "a")})
	wantCode(t, err, codes.Unavailable, "connection refused")
}

// An operator reading a failed bind must know which machine to look at: the
// broker answered, the Mesos master behind it did not.
func TestMesosFailureNamesTheMaster(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 4, 1024))
	ctx := context.Background()
	resp, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: pbPod("a"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 1}})
	if err != nil {
		t.Fatal(err)
	}
	e.launcher.fail = errors.New("timeout awaiting response headers")
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: resp.GetReservation().GetId(), Pod: podJSON(t, "a")})
	wantCode(t, err, codes.Unavailable, "timeout awaiting response headers")
	var reasons []string
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reasons = append(reasons, info.GetDomain()+"/"+info.GetReason())
		}
	}
	if want := brokerv1.ErrorDomain + "/" + brokerv1.ReasonMesosUnavailable; !slices.Contains(reasons, want) {
		t.Fatalf("Launch failed by the master: error details %v, want %s", reasons, want)
	}
}

func TestKill(t *testing.T) {
	e := newEnv(t)
	_, err := e.client.Kill(context.Background(), &brokerv1.KillRequest{})
	wantCode(t, err, codes.InvalidArgument, "pod.uid")
	resp, err := e.client.Kill(context.Background(), &brokerv1.KillRequest{Pod: pbPod("a"), AgentId: "a1"})
	if err != nil || resp.GetTaskId() != "pod.uid-a" || len(e.launcher.kills) != 1 || e.launcher.kills[0] != "pod.uid-a" {
		t.Errorf("Kill = %v %v, kills %v", resp, err, e.launcher.kills)
	}
}

// watch opens WatchOffers and returns the stream and its first message.
func watch(ctx context.Context, t *testing.T, e *env) (grpc.ServerStreamingClient[brokerv1.WatchOffersResponse], *brokerv1.WatchOffersResponse) {
	t.Helper()
	stream, err := e.client.WatchOffers(ctx, &brokerv1.WatchOffersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	return stream, ev
}

func TestWatchOffersSnapshotThenDeltas(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 2, 1024))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, ev := watch(ctx, t, e)
	snap := ev.GetSnapshot()
	if len(snap.GetAgents()) != 1 || snap.GetAgents()[0].GetHostname() != "node-1" || snap.GetAgents()[0].GetAvailable()[0].GetResources().GetCpus() != 2 {
		t.Fatalf("first message %v, want a snapshot with node-1 and 2 cpus", ev)
	}
	if _, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: pbPod("a"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 0.5, HostPorts: []uint32{31000}}}); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	a := ev.GetUpdated()
	avail := brokerapi.ByRoleFromProto(a.GetAvailable())["*"]
	if a.GetAgentId() != "a1" || avail.CPUs != 1500 || avail.Ports.Contains(31000) || ev.GetResourceVersion() != a.GetResourceVersion() {
		t.Errorf("delta %v, want a1 with 1.5 cpus and port 31000 taken", ev)
	}
	e.cache.RemoveAgent("a1")
	ev, err = stream.Recv()
	if err != nil || ev.GetRemoved().GetHostname() != "node-1" {
		t.Errorf("after RemoveAgent %v %v, want node-1 removed", ev, err)
	}
}

// TestWatchOffersEndsWhenNotServing: a broker that stops serving (lost its
// leadership or its Mesos subscription) ends the plugins' watches, so that
// they reconnect to the replica that serves; a replica that does not serve
// refuses new watches.
func TestWatchOffersEndsWhenNotServing(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 2, 1024))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := e.client.WatchOffers(ctx, &brokerv1.WatchOffersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := stream.Recv(); err != nil || ev.GetSnapshot() == nil {
		t.Fatalf("first message %v %v, want the snapshot", ev, err)
	}
	e.server.SetServing(false)
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable, "not serving")

	again, err := e.client.WatchOffers(ctx, &brokerv1.WatchOffersRequest{})
	if err == nil {
		_, err = again.Recv()
	}
	wantCode(t, err, codes.Unavailable, "not the elected leader")

	e.server.SetServing(true)
	again, err = e.client.WatchOffers(ctx, &brokerv1.WatchOffersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := again.Recv(); err != nil || ev.GetSnapshot() == nil {
		t.Fatalf("after serving again: %v %v, want a snapshot", ev, err)
	}
}

// TestReserveFencedByEpoch: the offer stream names the broker's epoch, and a
// Reserve made against another epoch's view (a broker that restarted since)
// is refused, naming both epochs; one of this epoch is served.
func TestReserveFencedByEpoch(t *testing.T) {
	e := newEnv(t)
	e.cache.Add(offer("o1", "a1", "node-1", 2, 1024))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, ev := watch(ctx, t, e)
	epoch := ev.GetSnapshot().GetEpoch()
	if epoch == "" || epoch != e.cache.Epoch() {
		t.Fatalf("snapshot epoch %q, want the cache's %q", epoch, e.cache.Epoch())
	}
	other := offers.New(offers.Config{}).Epoch()
	_, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: pbPod("a"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 1}, Epoch: other})
	wantCode(t, err, codes.FailedPrecondition, "broker epoch "+other+", this broker's epoch is "+epoch)
	if v, _ := e.cache.Agent("a1"); v.Available["*"].CPUs != 2000 {
		t.Errorf("after a refused Reserve %s cpus are available, want 2", v.Available["*"].CPUs)
	}
	if _, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: pbPod("a"), NodeName: "node-1", Demand: &brokerv1.Demand{Cpus: 1}, Epoch: epoch}); err != nil {
		t.Errorf("Reserve of this epoch: %v", err)
	}
}
