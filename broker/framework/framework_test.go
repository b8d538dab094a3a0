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
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/k8sm/k8sm/broker/framework"
	"github.com/k8sm/k8sm/broker/grpcserver"
	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	"github.com/k8sm/k8sm/broker/offers"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// builder puts the pod JSON in the task, as the executor contract says.
type builder struct{}

func (builder) NewTask(pod *v1.Pod, agent mesos.AgentID, res []mesos.Resource, exec *mesos.ExecutorInfo) (mesos.TaskInfo, error) {
	data, err := json.Marshal(pod)
	if err != nil {
		return mesos.TaskInfo{}, err
	}
	return mesos.TaskInfo{Name: pod.Namespace + "/" + pod.Name, TaskID: mesos.TaskID{Value: grpcserver.TaskID(pod.UID)}, AgentID: agent, Resources: res, Executor: exec, Data: data}, nil
}

func (builder) NewExecutorInfo(fw mesos.FrameworkID) *mesos.ExecutorInfo {
	cmd := "/bin/true"
	return &mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "k8sm-executor-test"}, FrameworkID: &fw, Command: &mesos.CommandInfo{Value: &cmd}}
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

func (s *statuses) wait(t *testing.T, ctx context.Context, task string, want mesos.TaskState) {
	t.Helper()
	for {
		s.mu.Lock()
		for _, st := range s.m[task] {
			if st == want {
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

// timedCaller measures the ACCEPT round trips to the master.
type timedCaller struct {
	brokermesos.Caller
	mu      sync.Mutex
	accepts time.Duration
	n       int
}

func (c *timedCaller) Call(ctx context.Context, call *scheduler.Call) error {
	start := time.Now()
	err := c.Caller.Call(ctx, call)
	if call.Type == scheduler.Call_ACCEPT {
		c.mu.Lock()
		c.accepts += time.Since(start)
		c.n++
		c.mu.Unlock()
	}
	return err
}

type env struct {
	caller *timedCaller
	sim    *mesossim.Sim
	client *brokermesos.Client
	fw     *framework.Framework
	cache  *offers.Cache
	broker brokerv1.BrokerClient
	status *statuses
}

func newEnv(t testing.TB, ctx context.Context) *env {
	return newEnvWith(t, ctx, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]", 50*time.Millisecond)
}

func newEnvWith(t testing.TB, ctx context.Context, spec string, allocation time.Duration) *env {
	t.Helper()
	res, err := mesossim.ParseResources(spec)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	sim, err := mesossim.Start(sctx, mesossim.Config{
		WorkDir: t.TempDir(),
		Master:  master.Config{HeartbeatInterval: 200 * time.Millisecond, AllocationInterval: allocation, AgentPingTimeout: 100 * time.Millisecond},
		Agents:  []agent.Config{{Hostname: "node-a", Resources: res, Hollow: true, StatusUpdateRetryInterval: 200 * time.Millisecond}},
	})
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); scancel() })

	exec := podresources.Resources{Scalars: podresources.Scalars{CPUs: 100, MemMB: 64000}}
	cache := offers.New(offers.Config{Executor: exec, DeclineAfter: 300 * time.Millisecond, RefuseSeconds: 1})
	ft := 3600.0
	client, err := brokermesos.New(brokermesos.Config{
		Detector:  brokermesos.StaticMaster(sim.MasterURL()),
		Framework: mesos.FrameworkInfo{User: "root", Name: "k8sm", FailoverTimeout: &ft, Roles: []string{"*"}, Capabilities: []mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := &statuses{m: map[string][]mesos.TaskState{}, ch: make(chan struct{}, 1)}
	caller := &timedCaller{Caller: client}
	fw := framework.New(framework.Config{
		Cache: cache, Caller: caller, FrameworkID: client.FrameworkID, Builder: builder{},
		Executor: exec, RefuseSeconds: 1, DeclineInterval: 100 * time.Millisecond, Status: st,
	})
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = client.Run(rctx, fw) }()
	go func() { defer wg.Done(); fw.Run(rctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	srv := grpcserver.New(cache, fw, grpcserver.Options{BatchWindow: 20 * time.Millisecond})
	srv.SetServing(true)
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
	t.Cleanup(func() { _ = conn.Close(); g.Stop() })
	return &env{caller: caller, sim: sim, client: client, fw: fw, cache: cache, broker: brokerv1.NewBrokerClient(conn), status: st}
}

func podBytes(t testing.TB, name string, uid types.UID, wildcard bool) []byte {
	t.Helper()
	ann := map[string]string{}
	if wildcard {
		ann[podresources.WildcardPortsAnnotation] = "true"
	}
	b, err := json.Marshal(&v1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: uid, Annotations: ann},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "webapp", Ports: []v1.ContainerPort{{ContainerPort: 8080}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reserve retries until the offers of the agent arrived.
func reserve(t *testing.T, ctx context.Context, e *env, name string, uid types.UID, wildcard int32) *brokerv1.Reservation {
	t.Helper()
	for {
		resp, err := e.broker.Reserve(ctx, &brokerv1.ReserveRequest{
			Pod:      &brokerv1.PodRef{Uid: string(uid), Namespace: "default", Name: name},
			NodeName: "node-a",
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
	e.status.wait(t, ctx, grpcserver.TaskID("uid-1"), mesos.TASK_RUNNING)
	e.status.wait(t, ctx, grpcserver.TaskID("uid-2"), mesos.TASK_RUNNING)

	// The master runs the tasks with the pod in their data, host port applied.
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
	for _, uid := range []types.UID{"uid-1", "uid-2"} {
		if st := found[grpcserver.TaskID(uid)]; st != "TASK_RUNNING" {
			t.Errorf("master says task %s is %v, want TASK_RUNNING (tasks %v)", grpcserver.TaskID(uid), st, found)
		}
	}

	if _, err := e.broker.Kill(ctx, &brokerv1.KillRequest{Pod: &brokerv1.PodRef{Uid: "uid-1", Namespace: "default", Name: "web-1"}}); err != nil {
		t.Fatal(err)
	}
	e.status.wait(t, ctx, grpcserver.TaskID("uid-1"), mesos.TASK_KILLED)
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
	e.fw.SetPending(false)
	waitFor(t, ctx, "the framework to suppress and hold no offer", func() bool {
		fw := frameworkState(t, e)
		roles, _ := json.Marshal(fw["suppressed_roles"])
		return string(roles) == `["*"]` && len(e.sim.Leader().Offers(e.client.FrameworkID())) == 0
	})
	e.fw.SetPending(true)
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
