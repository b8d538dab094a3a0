package framework_test

import (
	"context"
	"encoding/json"
	"net"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/k8sm/k8sm/broker/framework"
	"github.com/k8sm/k8sm/broker/grpcserver"
	"github.com/k8sm/k8sm/broker/launch"
	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	"github.com/k8sm/k8sm/broker/offers"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/rolepolicy"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// builder makes the executor of these tests.
type builder struct{ args []string }

func (b builder) NewExecutorInfo(fw mesos.FrameworkID, role string) *mesos.ExecutorInfo {
	return taskinfo.NewExecutorInfo(fw, taskinfo.ExecutorConfig{Command: "/bin/true", ExtraArgs: b.args, Resources: podresources.ToMesos(testExecutor, role)})
}

// statuses records task states by task id.
type statuses struct {
	mu sync.Mutex
	m  map[string][]mesos.TaskState
	ch chan struct{}
}

func (s *statuses) TaskStatus(_ context.Context, st *mesos.TaskStatus) error {
	s.mu.Lock()
	s.m[st.TaskID.Value] = append(s.m[st.TaskID.Value], st.GetState())
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
	return nil
}

// task waits for a status of a task of pod uid and returns the task's id
// (the pod's launch attempt).
func (s *statuses) task(t *testing.T, ctx context.Context, uid types.UID) string {
	t.Helper()
	for {
		s.mu.Lock()
		for id := range s.m {
			if taskinfo.PodUID(id) == uid {
				s.mu.Unlock()
				return id
			}
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatalf("no status of a task of pod %s", uid)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (s *statuses) wait(t *testing.T, ctx context.Context, task string, want mesos.TaskState) {
	t.Helper()
	s.waitAfter(t, ctx, task, -1, want)
}

// waitAfter waits for want to be reported after after (-1: at any time).
func (s *statuses) waitAfter(t *testing.T, ctx context.Context, task string, after, want mesos.TaskState) {
	t.Helper()
	for {
		s.mu.Lock()
		seenAfter := after == -1
		for _, st := range s.m[task] {
			if st == after {
				seenAfter = true
			} else if st == want && seenAfter {
				s.mu.Unlock()
				return
			}
		}
		got := s.m[task]
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatalf("task %s never reached %s (saw %v)", task, want, got)
		case <-s.ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// chainSink hands a status to first, then, if it took it, to then.
type chainSink struct{ first, then framework.StatusSink }

func (c chainSink) TaskStatus(ctx context.Context, st *mesos.TaskStatus) error {
	if err := c.first.TaskStatus(ctx, st); err != nil {
		return err
	}
	return c.then.TaskStatus(ctx, st)
}

// timedCaller measures the ACCEPT round trips to the master.
type timedCaller struct {
	brokermesos.Caller
	mu      sync.Mutex
	accepts time.Duration
	n       int
	// refuse is the refuse_seconds filter of each ACCEPT, in order.
	refuse []float64
	// hold, when set, holds every RECONCILE call until it is closed.
	hold chan struct{}
}

func (c *timedCaller) Call(ctx context.Context, call *scheduler.Call) error {
	if call.Type == scheduler.Call_RECONCILE && c.hold != nil {
		select {
		case <-c.hold:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	start := time.Now()
	err := c.Caller.Call(ctx, call)
	if call.Type == scheduler.Call_ACCEPT {
		c.mu.Lock()
		c.accepts += time.Since(start)
		c.n++
		c.refuse = append(c.refuse, call.GetAccept().GetFilters().GetRefuseSeconds())
		c.mu.Unlock()
	}
	return err
}

type env struct {
	caller *timedCaller
	sim    *mesossim.Sim
	client *brokermesos.Client
	fw     *framework.Framework
	driver *framework.Driver
	cache  *offers.Cache
	broker brokerv1.BrokerClient
	status *statuses
	stop   func()
}

func newEnv(t testing.TB, ctx context.Context) *env {
	return newEnvWith(t, ctx, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]", 50*time.Millisecond)
}

func newEnvWith(t testing.TB, ctx context.Context, spec string, allocation time.Duration) *env {
	t.Helper()
	return startBroker(t, ctx, startSim(t, spec, allocation), brokerOpts{})
}

func startSim(t testing.TB, spec string, allocation time.Duration) *mesossim.Sim {
	t.Helper()
	return startSimWith(t, spec, master.Config{HeartbeatInterval: 200 * time.Millisecond, AllocationInterval: allocation, AgentPingTimeout: 100 * time.Millisecond})
}

func startSimWith(t testing.TB, spec string, mcfg master.Config, hosts ...string) *mesossim.Sim {
	t.Helper()
	res, err := mesossim.ParseResources(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(hosts) == 0 {
		hosts = []string{"node-a"}
	}
	var agents []agent.Config
	for _, h := range hosts {
		agents = append(agents, agent.Config{Hostname: h, Resources: res, Hollow: true, StatusUpdateRetryInterval: 200 * time.Millisecond})
	}
	sctx, scancel := context.WithCancel(context.Background())
	sim, err := mesossim.Start(sctx, mesossim.Config{
		WorkDir: t.TempDir(),
		Master:  mcfg,
		Agents:  agents,
	})
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); scancel() })
	return sim
}

// testExecutor is the executor's own size in these tests.
var testExecutor = podresources.Resources{Scalars: podresources.Scalars{CPUs: 100, MemMB: 64000}}

type brokerOpts struct {
	roles []string
	// store keeps the framework id across brokers (a restart or failover).
	store brokermesos.IDStore
	// executorArgs change the executor's configuration.
	executorArgs []string
	// agents hears of the agents (the node mirror's part).
	agents framework.AgentSink
	// settleTimeout bounds the launcher's reconciliations (default 10s).
	settleTimeout time.Duration
	// holdReconcile holds the broker's RECONCILE calls until closed.
	holdReconcile    chan struct{}
	unreachableEvery time.Duration
	// batchWindow is the launcher's (default 20ms).
	batchWindow time.Duration
	// builder makes the ExecutorInfo (default: builder{executorArgs}).
	builder framework.ExecutorBuilder
	// sink, when set, is given every status before the recorder (the pod
	// controller's part), made with the broker's Driver.
	sink func(*framework.Driver) framework.StatusSink
}

// startBroker runs a broker (framework, cache, gRPC server) against sim
// until the test ends or the returned env's stop is called.
func startBroker(t testing.TB, ctx context.Context, sim *mesossim.Sim, o brokerOpts) *env {
	t.Helper()
	if len(o.roles) == 0 {
		o.roles = []string{"*"}
	}
	cache := offers.New(offers.Config{Executor: testExecutor, DeclineAfter: 300 * time.Millisecond, RefuseSeconds: 1})
	ft := 3600.0
	client, err := brokermesos.New(brokermesos.Config{
		Detector:  brokermesos.StaticMaster(sim.MasterURL()),
		Store:     o.store,
		Framework: mesos.FrameworkInfo{User: "root", Name: "k8sm", FailoverTimeout: &ft, Roles: o.roles, Capabilities: framework.Capabilities(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := &statuses{m: map[string][]mesos.TaskState{}, ch: make(chan struct{}, 1)}
	caller := &timedCaller{Caller: client, hold: o.holdReconcile}
	driver := framework.NewDriver(caller, o.roles)
	var sink framework.StatusSink = st
	if o.sink != nil {
		sink = chainSink{o.sink(driver), st}
	}
	if o.builder == nil {
		o.builder = builder{args: o.executorArgs}
	}
	// Serving as the broker's app wires it: once the reconciliation after
	// subscribing was answered.
	var srv *grpcserver.Server
	fw := framework.New(framework.Config{
		Cache: cache, Caller: caller, Driver: driver, FrameworkID: client.FrameworkID, Builder: o.builder, Roles: o.roles,
		Executor: testExecutor, RefuseSeconds: 1, DeclineInterval: 100 * time.Millisecond, Status: sink, Agents: o.agents,
		Serving: func(serving bool) { srv.SetServing(serving) }, UnreachableReconcileInterval: o.unreachableEvery,
	})
	if o.batchWindow == 0 {
		o.batchWindow = 20 * time.Millisecond
	}
	srv = grpcserver.New(cache, launch.New(cache, fw, launch.Options{BatchWindow: o.batchWindow, SettleTimeout: o.settleTimeout}))
	// The framework's first role is every namespace's, as a deployment's
	// role policy would say.
	policy, err := rolepolicy.Parse([]byte("apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\ndefaultRole: \""+o.roles[0]+"\"\n"), "test")
	if err != nil {
		t.Fatal(err)
	}
	srv.SetRolePolicy(rolepolicy.Static(policy))
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = client.Run(rctx, fw) }()
	go func() { defer wg.Done(); fw.Run(rctx) }()
	go func() { defer wg.Done(); driver.Run(rctx) }()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() { _ = conn.Close(); g.Stop(); cancel(); wg.Wait() })
	}
	t.Cleanup(stop)
	return &env{caller: caller, sim: sim, client: client, fw: fw, driver: driver, cache: cache, broker: brokerv1.NewBrokerClient(conn), status: st, stop: stop}
}

func podBytes(t testing.TB, name string, uid types.UID, wildcard bool) []byte {
	t.Helper()
	return podBytesOn(t, "node-a", name, uid, wildcard)
}

// podBytesOn is the pod bound to node, as the plugin sends it to Launch.
func podBytesOn(t testing.TB, node, name string, uid types.UID, wildcard bool) []byte {
	t.Helper()
	ann := map[string]string{}
	if wildcard {
		ann[taskinfo.WildcardPortsAnnotation] = "true"
	}
	b, err := json.Marshal(&v1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uid, Annotations: ann},
		Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Image: "webapp", Ports: []v1.ContainerPort{{ContainerPort: 8080}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reserve retries until the offers of the agent arrived.
func reserve(t *testing.T, ctx context.Context, e *env, name string, uid types.UID, wildcard int32) *brokerv1.Reservation {
	t.Helper()
	return reserveOn(t, ctx, e, "node-a", name, uid, wildcard)
}

// reserveOn retries until the offers of node arrived and the broker serves.
func reserveOn(t *testing.T, ctx context.Context, e *env, node, name string, uid types.UID, wildcard int32) *brokerv1.Reservation {
	t.Helper()
	for {
		resp, err := e.broker.Reserve(ctx, &brokerv1.ReserveRequest{
			Pod:      &brokerv1.PodRef{Uid: string(uid), Namespace: "default", Name: name},
			NodeName: node,
			Demand:   &brokerv1.Demand{Cpus: 0.5, MemMb: 128, WildcardPorts: wildcard},
		})
		if err == nil {
			return resp.GetReservation()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("reserving for %s: %v", name, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestReserveLaunchRunsTask: a pod reserved and launched over gRPC becomes a
// RUNNING task at the agent, in one ACCEPT with its batch mate; killing it
// over gRPC ends it KILLED.
func TestReserveLaunchRunsTask(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t, ctx)

	r1 := reserve(t, ctx, e, "web-1", "uid-1", 1)
	r2 := reserve(t, ctx, e, "web-2", "uid-2", 0)
	var wg sync.WaitGroup
	resps := make([]*brokerv1.LaunchResponse, 2)
	for i, r := range []*brokerv1.Reservation{r1, r2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podBytes(t, r.GetPod().GetName(), types.UID(r.GetPod().GetUid()), i == 0), PodContentType: "application/json"})
			if err != nil {
				t.Errorf("launching %s: %v", r.GetPod().GetName(), err)
				return
			}
			resps[i] = resp
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if resps[0].GetBatchSize() != 2 {
		t.Errorf("batch size %d, want both pods in one ACCEPT", resps[0].GetBatchSize())
	}
	task1, task2 := e.status.task(t, ctx, "uid-1"), e.status.task(t, ctx, "uid-2")
	e.status.wait(t, ctx, task1, mesos.TASK_RUNNING)
	e.status.wait(t, ctx, task2, mesos.TASK_RUNNING)

	// The master runs both tasks; the wildcard pod got its host port.
	tasks := masterTasks(t, e)
	if len(tasks) != 2 {
		t.Fatalf("master runs %d tasks, want 2", len(tasks))
	}
	hostPort := r1.GetWildcardHostPorts()
	if len(hostPort) != 1 {
		t.Fatalf("reservation chose %v host ports, want 1", hostPort)
	}
	found := map[any]any{}
	for _, task := range tasks {
		found[task["id"]] = task["state"]
	}
	for _, task := range []string{task1, task2} {
		if st := found[task]; st != "TASK_RUNNING" {
			t.Errorf("master says task %s is %v, want TASK_RUNNING (tasks %v)", task, st, found)
		}
	}

	if _, err := e.broker.Kill(ctx, &brokerv1.KillRequest{Pod: &brokerv1.PodRef{Uid: "uid-1", Namespace: "default", Name: "web-1"}}); err != nil {
		t.Fatal(err)
	}
	e.status.wait(t, ctx, task1, mesos.TASK_KILLED)
}

func masterTasks(t *testing.T, e *env) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, fw := range e.sim.Leader().State()["frameworks"].([]map[string]any) {
		b, _ := json.Marshal(fw["tasks"])
		var ts []map[string]any
		_ = json.Unmarshal(b, &ts)
		out = append(out, ts...)
	}
	return out
}

// TestSuppressAndDecline: with no pod pending the broker declines what it
// holds and suppresses; a pending pod revives the offers.
func TestSuppressAndDecline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t, ctx)
	waitFor(t, ctx, "offers to arrive", func() bool {
		views, _ := e.cache.Snapshot()
		return len(views) == 1 && !views[0].Available.Total().IsZero()
	})
	e.driver.SetPending(false)
	waitFor(t, ctx, "the framework to suppress and hold no offer", func() bool {
		fw := frameworkState(t, e)
		roles, _ := json.Marshal(fw["suppressed_roles"])
		return string(roles) == `["*"]` && len(e.sim.Leader().Offers(e.client.FrameworkID())) == 0
	})
	e.driver.SetPending(true)
	waitFor(t, ctx, "offers after REVIVE", func() bool {
		fw := frameworkState(t, e)
		roles, _ := json.Marshal(fw["suppressed_roles"])
		return string(roles) != `["*"]` && len(e.sim.Leader().Offers(e.client.FrameworkID())) > 0
	})
}

func frameworkState(t *testing.T, e *env) map[string]any {
	for _, fw := range e.sim.Leader().State()["frameworks"].([]map[string]any) {
		return fw
	}
	return map[string]any{}
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// launchOne reserves and launches one pod on node-a through b and returns the
// state its task reaches first after STAGING (RUNNING, or why not).
func launchOne(t *testing.T, ctx context.Context, b *env, name string, uid types.UID) mesos.TaskState {
	t.Helper()
	r := reserve(t, ctx, b, name, uid, 0)
	if _, err := b.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podBytes(t, name, uid, false), PodContentType: "application/json"}); err != nil {
		t.Fatalf("launching %s: %v", name, err)
	}
	task := b.status.task(t, ctx, uid)
	for {
		b.status.mu.Lock()
		for _, st := range b.status.m[task] {
			if st != mesos.TASK_STAGING && st != mesos.TASK_STARTING {
				b.status.mu.Unlock()
				return st
			}
		}
		b.status.mu.Unlock()
		select {
		case <-ctx.Done():
			t.Fatalf("task of %s never left STAGING", name)
		case <-b.status.ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// TestExecutorInfoAcrossFailover: a broker that takes over (same framework
// id, nothing remembered) launches on an agent whose executor the previous
// broker started; Mesos refuses the task unless the ExecutorInfo is the very
// same. The agent offers resources both reserved for the framework's role
// and unreserved, so an ExecutorInfo cut from whatever the offer held first
// would differ from one computed afresh.
func TestExecutorInfoAcrossFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sim := startSim(t, "cpus(k8s):2;mem(k8s):2048;cpus:4;mem:4096;disk:10000;ports:[31000-32000]", 50*time.Millisecond)
	store := &brokermesos.MemoryIDStore{}
	opts := brokerOpts{roles: []string{"k8s"}, store: store}

	b1 := startBroker(t, ctx, sim, opts)
	if st := launchOne(t, ctx, b1, "web-1", "uid-1"); st != mesos.TASK_RUNNING {
		t.Fatalf("first pod's task %s, want TASK_RUNNING", st)
	}
	b1.stop()

	b2 := startBroker(t, ctx, sim, opts)
	if st := launchOne(t, ctx, b2, "web-2", "uid-2"); st != mesos.TASK_RUNNING {
		t.Fatalf("pod launched by the new leader: task %s, want TASK_RUNNING (Mesos refuses an ExecutorInfo that differs from the running executor's)", st)
	}
	if b2.client.FrameworkID() != b1.client.FrameworkID() {
		t.Fatalf("framework id changed across the failover")
	}
}

// TestExecutorConfigChange: after the operator changed the executor's flags,
// the agent whose old executor still runs a pod takes no new pod (two
// executors would be two kubelets for one Node); once that pod is gone the
// broker shuts the old executor down and the next pod starts the new one.
func TestExecutorConfigChange(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sim := startSim(t, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]", 50*time.Millisecond)
	store := &brokermesos.MemoryIDStore{}

	b1 := startBroker(t, ctx, sim, brokerOpts{store: store})
	if st := launchOne(t, ctx, b1, "web-1", "uid-1"); st != mesos.TASK_RUNNING {
		t.Fatalf("first pod's task %s, want TASK_RUNNING", st)
	}
	b1.stop()

	b2 := startBroker(t, ctx, sim, brokerOpts{store: store, executorArgs: []string{"--v=4"}})
	// Reconciliation tells the new broker which executor runs the pod.
	waitFor(t, ctx, "the agent to drain (an executor of the old configuration runs there)", func() bool {
		v, ok := b2.cache.Agent(sim.Agent(0).ID())
		return ok && v.Draining != "" && v.Available.Total().IsZero()
	})
	if _, err := b2.broker.Reserve(ctx, &brokerv1.ReserveRequest{
		Pod: &brokerv1.PodRef{Uid: "uid-2", Namespace: "default", Name: "web-2"}, NodeName: "node-a",
		Demand: &brokerv1.Demand{Cpus: 0.5, MemMb: 128},
	}); err == nil {
		t.Fatal("reserved on an agent that runs an executor of the old configuration")
	}
	if _, err := b2.broker.Kill(ctx, &brokerv1.KillRequest{Pod: &brokerv1.PodRef{Uid: "uid-1", Namespace: "default", Name: "web-1"}}); err != nil {
		t.Fatal(err)
	}
	b2.status.wait(t, ctx, b2.status.task(t, ctx, "uid-1"), mesos.TASK_KILLED)
	if st := launchOne(t, ctx, b2, "web-2", "uid-2"); st != mesos.TASK_RUNNING {
		t.Fatalf("pod after the old executor ended: task %s, want TASK_RUNNING", st)
	}
	var execs []string
	for _, fw := range sim.Leader().State()["frameworks"].([]map[string]any) {
		b, _ := json.Marshal(fw["executors"])
		var es []map[string]any
		_ = json.Unmarshal(b, &es)
		for _, e := range es {
			execs = append(execs, e["executor_id"].(string))
		}
	}
	if len(execs) != 1 {
		t.Errorf("the agent runs executors %v, want only the new configuration's", execs)
	}
}

// TestAcceptRefuseWhilePending: while pods are pending, an ACCEPT leaves the
// agent's leftovers unfiltered, so they are offered again in the next
// allocation for the next pod; with none pending they are filtered for
// --refuse-seconds like a decline.
func TestAcceptRefuseWhilePending(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t, ctx)
	refuses := func() []float64 {
		e.caller.mu.Lock()
		defer e.caller.mu.Unlock()
		return append([]float64(nil), e.caller.refuse...)
	}

	// The reservation holds its offer; the pod reserved is the last one.
	r := reserve(t, ctx, e, "web-1", "uid-1", 0)
	e.driver.SetPending(false)
	if _, err := e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podBytes(t, "web-1", "uid-1", false), PodContentType: "application/json"}); err != nil {
		t.Fatal(err)
	}
	if got := refuses(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("ACCEPT filters with nothing pending %v, want the configured 1s", got)
	}

	e.driver.Revive() // a new pod
	if st := launchOne(t, ctx, e, "web-2", "uid-2"); st != mesos.TASK_RUNNING {
		t.Fatalf("web-2's task %s", st)
	}
	if got := refuses(); len(got) != 2 || got[1] != 0 {
		t.Errorf("ACCEPT filters while pods are pending %v, want 0s for the second", got)
	}
}

// TestAcceptWithoutAnswerSettled: the master takes an ACCEPT but its answer
// is lost (the connection breaks, as a reply that timed out). The launch is
// settled by reconciliation: the pod's task runs, the launch succeeds, and
// it is the only task of the pod (not failed, not launched twice).
func TestAcceptWithoutAnswerSettled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t, ctx)
	if err := e.sim.InjectCallFault(mesossim.CallFault{Type: scheduler.Call_ACCEPT, Count: 1, LoseAnswer: true}); err != nil {
		t.Fatal(err)
	}
	if st := launchOne(t, ctx, e, "web-1", "uid-1"); st != mesos.TASK_RUNNING {
		t.Fatalf("task of the ACCEPT whose answer was lost: %s, want TASK_RUNNING", st)
	}
	if tasks := masterTasks(t, e); len(tasks) != 1 {
		t.Errorf("master runs %d tasks, want the pod's one", len(tasks))
	}
}

// TestRelaunchAdoptsLiveAttempt: a pod launched again while its first
// attempt lives on the agent (the broker that launched it died before
// answering, or the scheduler before binding) gets the first attempt's task
// back: the master runs one task of the pod, not two.
func TestRelaunchAdoptsLiveAttempt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e := newEnv(t, ctx)
	if st := launchOne(t, ctx, e, "web-1", "uid-1"); st != mesos.TASK_RUNNING {
		t.Fatalf("first attempt: %s, want TASK_RUNNING", st)
	}
	first := e.status.task(t, ctx, "uid-1")
	r := reserve(t, ctx, e, "web-1", "uid-1", 0)
	resp, err := e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podBytes(t, "web-1", "uid-1", false), PodContentType: "application/json"})
	if err != nil {
		t.Fatalf("launching web-1 again: %v, want its live task adopted", err)
	}
	if resp.GetTaskId() != first {
		t.Errorf("second launch answered task %s, want the live first attempt %s", resp.GetTaskId(), first)
	}
	if tasks := masterTasks(t, e); len(tasks) != 1 {
		t.Errorf("master has %d tasks of the pod, want 1", len(tasks))
	}
}

// TestRestartedBrokerAdoptsAttemptOnAnotherAgent: the broker died after the
// master took the ACCEPT of attempt 1 of a pod on node-a (the pod stayed
// unbound); the scheduler retries the pod on node-b through the restarted
// broker. Launch answers with attempt 1 on node-a, the node the plugin binds
// the pod to: the master has one task of the pod, never killed.
func TestRestartedBrokerAdoptsAttemptOnAnotherAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sim := startSimWith(t, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]",
		master.Config{HeartbeatInterval: 200 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: 100 * time.Millisecond},
		"node-a", "node-b")
	store := &brokermesos.MemoryIDStore{}
	b1 := startBroker(t, ctx, sim, brokerOpts{store: store})
	if st := launchOne(t, ctx, b1, "web-1", "uid-1"); st != mesos.TASK_RUNNING {
		t.Fatalf("first attempt: %s, want TASK_RUNNING", st)
	}
	first := b1.status.task(t, ctx, "uid-1")
	b1.stop()

	b2 := startBroker(t, ctx, sim, brokerOpts{store: store})
	r := reserveOn(t, ctx, b2, "node-b", "web-1", "uid-1", 0)
	resp, err := b2.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podBytesOn(t, "node-b", "web-1", "uid-1", false), PodContentType: "application/json"})
	if err != nil {
		t.Fatalf("launching web-1 on node-b with attempt 1 live on node-a: %v, want attempt 1 adopted", err)
	}
	if resp.GetTaskId() != first || resp.GetAgentId() != sim.Agent(0).ID() {
		t.Errorf("launch answered task %s on agent %s, want attempt 1 %s on node-a's agent %s", resp.GetTaskId(), resp.GetAgentId(), first, sim.Agent(0).ID())
	}
	tasks := masterTasks(t, b2)
	if len(tasks) != 1 || tasks[0]["state"] != "TASK_RUNNING" {
		t.Errorf("master has tasks %v, want attempt 1 alone, running", tasks)
	}
}

// TestRestartedBrokerReservesOnceReconciled: a restarted broker learns of
// the tasks an earlier process launched only from the master's answers to
// its reconciliation. Until they came it refuses Reserve (Unavailable: the
// plugin tries again), so that a launch never goes beside a task it does
// not know of yet; then the retry adopts that task.
func TestRestartedBrokerReservesOnceReconciled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sim := startSim(t, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]", 50*time.Millisecond)
	store := &brokermesos.MemoryIDStore{}
	b1 := startBroker(t, ctx, sim, brokerOpts{store: store})
	if st := launchOne(t, ctx, b1, "web-1", "uid-1"); st != mesos.TASK_RUNNING {
		t.Fatalf("first attempt: %s, want TASK_RUNNING", st)
	}
	first := b1.status.task(t, ctx, "uid-1")
	b1.stop()

	hold := make(chan struct{})
	b2 := startBroker(t, ctx, sim, brokerOpts{store: store, holdReconcile: hold})
	waitFor(t, ctx, "offers for the restarted broker", func() bool {
		v, ok := b2.cache.Agent(sim.Agent(0).ID())
		return ok && !v.Available.Total().IsZero()
	})
	req := &brokerv1.ReserveRequest{Pod: &brokerv1.PodRef{Uid: "uid-1", Namespace: "default", Name: "web-1"}, NodeName: "node-a", Demand: &brokerv1.Demand{Cpus: 0.5, MemMb: 128}}
	if r, err := b2.broker.Reserve(ctx, req); status.Code(err) != codes.Unavailable {
		if err == nil {
			// Today's broker: the launch goes beside attempt 1.
			_, _ = b2.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetReservation().GetId(), Pod: podBytes(t, "web-1", "uid-1", false), PodContentType: "application/json"})
		}
		t.Fatalf("Reserve before the reconciliation was answered: %v, want Unavailable (master tasks now %d)", err, len(masterTasks(t, b2)))
	}
	close(hold)
	r := reserve(t, ctx, b2, "web-1", "uid-1", 0)
	resp, err := b2.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: podBytes(t, "web-1", "uid-1", false), PodContentType: "application/json"})
	if err != nil || resp.GetTaskId() != first {
		t.Fatalf("launch once reconciled: %v, %v; want attempt 1 %s adopted", resp, err, first)
	}
	if tasks := masterTasks(t, b2); len(tasks) != 1 {
		t.Errorf("master has %d tasks of the pod, want 1", len(tasks))
	}
}
