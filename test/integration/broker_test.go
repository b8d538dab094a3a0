//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/k8sm/k8sm/broker/app"
	"github.com/k8sm/k8sm/broker/nodes"
	"github.com/k8sm/k8sm/hack/cluster"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/certfiles"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// brokerEnv is a real control plane, a simulated Mesos registered in the
// cluster's ZooKeeper, and the broker program run in-process.
type brokerEnv struct {
	t    *testing.T
	cfg  cluster.Config
	kube kubernetes.Interface
	sim  *mesossim.Sim
	// maxWatches is the brokers' --grpc-max-watches-per-client.
	maxWatches int
}

type runningBroker struct {
	grpc   string // host:port of the Broker API (mutual TLS)
	http   string // http://host:port of /metrics, /healthz, /readyz
	client brokerv1.BrokerClient
	health healthpb.HealthClient
	stop   func()
	// cfg is the broker's configuration: its gate and Kubernetes client.
	cfg *app.Config
	// mayLoseLeadership: the test takes leadership away, so Run ending
	// with "leadership lost" is expected, not a failure.
	mayLoseLeadership bool
}

// newBrokerEnv runs the control plane and a Mesos double with one agent,
// agent-a: hollow unless a configuration changes it (adjust).
func newBrokerEnv(t *testing.T, ctx context.Context, adjust ...func(*agent.Config)) *brokerEnv {
	t.Helper()
	d := os.Getenv("K8SM_BIN_DIR")
	if d == "" {
		t.Fatal("K8SM_BIN_DIR is not set: run these tests with `make test-integration`")
	}
	cfg, err := cluster.TestConfig(filepath.Join(t.TempDir(), "state"), d)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Containerd = false // the agents are hollow: no container runs
	cfg.Agents = 0         // this test runs its own Mesos and broker
	cfg.Agents = 0         // this test runs its own Mesos double and broker
	cl, err := cluster.Up(ctx, cfg)
	t.Cleanup(func() { _ = cluster.Down(context.Background(), cfg.StateDir) })
	if err != nil {
		t.Fatalf("bringing the cluster up: %v", err)
	}
	cs, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	// Exactly the shipped permissions (and the policy limiting its Node
	// writes): a request the broker needs and they lack fails the test.
	kubectl(t, cfg, "apply", "-f", "../../manifests/broker-rbac.yaml")

	res, err := mesossim.ParseResources("cpus:4;mem:4096;disk:10000;ports:[31000-32000]")
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := mesossim.ParseAttributes("rack:r1")
	if err != nil {
		t.Fatal(err)
	}
	ac := agent.Config{Hostname: "agent-a", Resources: res, Attributes: attrs, Hollow: true, StatusUpdateRetryInterval: 300 * time.Millisecond}
	for _, f := range adjust {
		f(&ac)
	}
	sctx, scancel := context.WithCancel(context.Background())
	sim, err := mesossim.Start(sctx, mesossim.Config{
		ZK:      "zk://" + cfg.ZooKeeperAddr() + "/mesos",
		WorkDir: t.TempDir(),
		Master:  master.Config{HeartbeatInterval: 500 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: 100 * time.Millisecond},
		Agents:  []agent.Config{ac},
	})
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); scancel() })
	return &brokerEnv{t: t, cfg: cfg, kube: cs, sim: sim, maxWatches: 8}
}

// startBroker runs k8sm-broker as its command would, with its own flags.
func (e *brokerEnv) startBroker(ctx context.Context, identity string, adjust ...func(*app.Options)) *runningBroker {
	t := e.t
	t.Helper()
	o := app.NewOptions()
	o.Master = "zk://" + e.cfg.ZooKeeperAddr() + "/mesos"
	o.Kubeconfig = e.cfg.PKI().Kubeconfig("k8sm-broker")
	o.GRPCAddress = "127.0.0.1:0"
	o.HTTPAddress = "127.0.0.1:0"
	o.Identity = identity
	o.DeclineAfter = 500 * time.Millisecond
	o.RefuseSeconds = 1
	o.BatchWindow = 20 * time.Millisecond
	o.ExecutorCPUs, o.ExecutorMemMB = 0.1, 64
	o.ReconcileInterval = 2 * time.Second
	// Mutual TLS as deployed: the local cluster's certificates, the
	// scheduler's identity allowed.
	o.GRPC.CertFile, o.GRPC.KeyFile = e.cfg.PKI().BrokerServing()
	o.GRPC.ClientCAFile = e.cfg.PKI().CACert()
	o.GRPC.MaxWatchesPerClient = e.maxWatches
	for _, f := range adjust {
		f(o)
	}
	c, err := o.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	cert, key := e.cfg.PKI().SchedulerBrokerClient()
	conn := e.dial(c.GRPCListener.Addr().String(), certfiles.ClientFiles{CAFile: e.cfg.PKI().CACert(), CertFile: cert, KeyFile: key})
	b := &runningBroker{grpc: c.GRPCListener.Addr().String(), http: "http://" + c.HTTPListener.Addr().String(), client: brokerv1.NewBrokerClient(conn), health: healthpb.NewHealthClient(conn), cfg: c}
	var once bool
	b.stop = func() {
		if once {
			return
		}
		once = true
		cancel()
		_ = conn.Close()
		if err := <-done; err != nil && !(b.mayLoseLeadership && strings.Contains(err.Error(), "leadership lost")) {
			t.Errorf("broker %s: %v", identity, err)
		}
	}
	t.Cleanup(b.stop)
	return b
}

// dial connects to the Broker API with the given TLS files, as the plugin does.
func (e *brokerEnv) dial(addr string, f certfiles.ClientFiles) *grpc.ClientConn {
	e.t.Helper()
	creds, err := certfiles.ClientCredentials(f)
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		e.t.Fatal(err)
	}
	return conn
}

// waitServing waits for the broker's health to say SERVING (leading and
// subscribed).
func (e *brokerEnv) waitServing(ctx context.Context, b *runningBroker) {
	e.t.Helper()
	e.eventually(ctx, "SERVING", func() (bool, string) {
		r, err := b.health.Check(ctx, &healthpb.HealthCheckRequest{Service: brokerapi.ServiceName})
		if err != nil {
			return false, err.Error()
		}
		return r.GetStatus() == healthpb.HealthCheckResponse_SERVING, r.GetStatus().String()
	})
}

func (e *brokerEnv) eventually(ctx context.Context, what string, cond func() (bool, string)) {
	e.t.Helper()
	last := ""
	for {
		ok, why := cond()
		if ok {
			return
		}
		last = why
		select {
		case <-ctx.Done():
			e.t.Fatalf("waiting for %s: %v (last: %s)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// taskStates is what the master says about every task of every framework,
// by pod uid for pods' tasks (a live attempt over one that ended), by task
// id for others.
func (e *brokerEnv) taskStates() (map[string]string, int) {
	out := map[string]string{}
	m := e.sim.Leader()
	if m == nil {
		return out, 0
	}
	st := m.State()
	fws := st["frameworks"].([]map[string]any)
	for _, fw := range fws {
		for _, key := range []string{"completed_tasks", "tasks"} {
			b, _ := json.Marshal(fw[key])
			var ts []map[string]any
			_ = json.Unmarshal(b, &ts)
			for _, task := range ts {
				id := task["id"].(string)
				if uid := taskinfo.PodUID(id); uid != "" {
					id = string(uid)
				}
				out[id] = task["state"].(string)
			}
		}
	}
	return out, len(fws)
}

func (e *brokerEnv) createPod(ctx context.Context, name, nodeName string) *corev1.Pod {
	e.t.Helper()
	p, err := e.kube.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			SchedulerName: "mesos-scheduler",
			NodeName:      nodeName,
			Containers: []corev1.Container{{Name: "web", Image: cluster.WebappImage, Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi")}}}},
			Tolerations: []corev1.Toleration{{Key: taskinfo.AgentTaintKey, Operator: corev1.TolerationOpExists}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// reserve claims the pod's resources on agent-a, retrying until the
// agent's resources are offered again (as the scheduler retries a pod).
func (e *brokerEnv) reserve(ctx context.Context, b *runningBroker, p *corev1.Pod) *brokerv1.Reservation {
	e.t.Helper()
	var r *brokerv1.Reservation
	e.eventually(ctx, "a reservation for "+p.Name, func() (bool, string) {
		resp, err := b.client.Reserve(ctx, &brokerv1.ReserveRequest{
			Pod: &brokerv1.PodRef{Uid: string(p.UID), Namespace: p.Namespace, Name: p.Name}, NodeName: "agent-a",
			Demand: &brokerv1.Demand{Cpus: 0.5, MemMb: 128},
		})
		if err != nil {
			return false, err.Error()
		}
		r = resp.GetReservation()
		return true, ""
	})
	return r
}

// schedule does what the MesosOffers plugin does for a pod: Reserve, Launch,
// then bind.
func (e *brokerEnv) schedule(ctx context.Context, b *runningBroker, p *corev1.Pod) {
	t := e.t
	t.Helper()
	r := e.reserve(ctx, b, p)
	bound := p.DeepCopy()
	bound.Spec.NodeName = r.GetNodeName()
	data, err := taskinfo.EncodePod(bound)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: data.JSON, PodContentType: "application/json"})
	if err != nil {
		t.Fatalf("launching %s: %v", p.Name, err)
	}
	if taskinfo.PodUID(resp.GetTaskId()) != p.UID {
		t.Errorf("task id %s, want a task of pod %s", resp.GetTaskId(), p.UID)
	}
	// Bound as the plugin binds: the Binding names the task (the attempt).
	err = e.kube.CoreV1().Pods(p.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID,
			Annotations: map[string]string{taskinfo.TaskIDAnnotation: resp.GetTaskId()}},
		Target: corev1.ObjectReference{Kind: "Node", Name: "agent-a"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("binding %s: %v", p.Name, err)
	}
}

func (e *brokerEnv) waitTask(ctx context.Context, uid types.UID, state string) {
	e.t.Helper()
	id := string(uid)
	e.eventually(ctx, "task of pod "+id+" "+state, func() (bool, string) {
		ts, _ := e.taskStates()
		return ts[id] == state, ts[id]
	})
}

func (e *brokerEnv) waitPodPhase(ctx context.Context, name string, phase corev1.PodPhase, reason string) {
	e.t.Helper()
	e.eventually(ctx, "pod "+name+" "+string(phase), func() (bool, string) {
		p, err := e.kube.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == phase && p.Status.Reason == reason, string(p.Status.Phase) + "/" + p.Status.Reason + ": " + p.Status.Message
	})
}

// TestBroker drives the broker as the scheduler plugin and a user would:
// agents become Nodes, a pod's resources are reserved and launched as a
// task, a task that ends fails its pod, a deleted pod's task is killed, and
// a restarted broker keeps its framework, kills no running task, kills the
// task of a pod deleted while it was down and fails a bound pod that has no
// task.
func TestBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newBrokerEnv(t, ctx)
	b := e.startBroker(ctx, "broker-1")

	{ // agent mirrored as a ready Node
		e.eventually(ctx, "Node agent-a", func() (bool, string) {
			n, err := e.kube.CoreV1().Nodes().Get(ctx, "agent-a", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			tainted := false
			for _, tn := range n.Spec.Taints {
				tainted = tainted || (tn.Key == taskinfo.AgentTaintKey && tn.Effect == corev1.TaintEffectNoSchedule)
			}
			cpu := n.Status.Capacity[corev1.ResourceCPU]
			ok := ready && tainted && n.Labels[taskinfo.AttributeLabelPrefix+"rack"] == "r1" && cpu.MilliValue() == 4000 && n.Annotations[taskinfo.AgentIDAnnotation] != ""
			return ok, "ready=" + strconv.FormatBool(ready) + " tainted=" + strconv.FormatBool(tainted) + " labels=" + strings.Join(mapKeys(n.Labels), ",") + " cpu=" + cpu.String()
		})
		e.eventually(ctx, "the broker to hold agent-a's Lease", func() (bool, string) {
			l, err := e.kube.CoordinationV1().Leases("kube-node-lease").Get(ctx, "agent-a", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			holder := ""
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			return holder == nodes.LeaseHolder && l.Spec.RenewTime != nil, "holder " + holder
		})
	}

	e.waitServing(ctx, b) // health serving when subscribed

	running := e.createPod(ctx, "running", "")
	e.schedule(ctx, b, running)
	e.waitTask(ctx, running.UID, "TASK_RUNNING")

	{ // what an operator sees: ready, and metrics of what happened
		code, body := httpGet(ctx, b.http+"/readyz?verbose")
		if code != http.StatusOK {
			t.Errorf("/readyz of the leader answered %d:\n%s", code, body)
		}
		for _, check := range []string{"[+]shutdown ok", "[+]informer-sync ok", "[+]mesos-subscription ok"} {
			if !strings.Contains(body, check) {
				t.Errorf("/readyz?verbose of the leader does not list %q:\n%s", check, body)
			}
		}
		// The broker acknowledges a status after handling it, which may
		// be just after the master reports the task RUNNING.
		for _, m := range []string{"k8sm_broker_offers_received_total", "k8sm_broker_launch_duration_seconds_count", "k8sm_broker_status_acknowledgements_total{result=\"success\"}", "k8sm_broker_reconcile_runs_total", "k8sm_broker_leader 1",
			// client-go's: the work queues and the API client
			`workqueue_adds_total{name="k8sm_node_mirror"}`, `workqueue_depth{name="k8sm_pods"}`, "rest_client_requests_total{", "rest_client_request_duration_seconds_bucket{"} {
			e.eventually(ctx, "/metrics to have "+m, func() (bool, string) {
				code, body := httpGet(ctx, b.http+"/metrics")
				return code == http.StatusOK && strings.Contains(body, m), fmt.Sprintf("HTTP %d", code)
			})
		}
	}

	{ // task killed: pod failed
		p := e.createPod(ctx, "killed", "")
		e.schedule(ctx, b, p)
		e.waitTask(ctx, p.UID, "TASK_RUNNING")
		if _, err := b.client.Kill(ctx, &brokerv1.KillRequest{Pod: &brokerv1.PodRef{Uid: string(p.UID), Namespace: "default", Name: p.Name}}); err != nil {
			t.Fatal(err)
		}
		e.waitTask(ctx, p.UID, "TASK_KILLED")
		e.waitPodPhase(ctx, p.Name, corev1.PodFailed, "MesosTaskKilled")
	}

	{ // pod deleted: task killed
		p := e.createPod(ctx, "deleted", "")
		e.schedule(ctx, b, p)
		e.waitTask(ctx, p.UID, "TASK_RUNNING")
		if err := e.kube.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		e.waitTask(ctx, p.UID, "TASK_KILLED")
	}

	{ // pod deleted gracefully where no kubelet runs (a hollow agent): no
		// kubelet ends it, so the broker kills its task and removes it,
		// rather than leaving it Terminating for ever
		p := e.createPod(ctx, "graceful", "")
		e.schedule(ctx, b, p)
		e.waitTask(ctx, p.UID, "TASK_RUNNING")
		if err := e.kube.CoreV1().Pods("default").Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitTask(ctx, p.UID, "TASK_KILLED")
		gctx, gcancel := context.WithTimeout(ctx, 2*time.Minute)
		e.eventually(gctx, "the deleted pod to go away", func() (bool, string) {
			got, err := e.kube.CoreV1().Pods("default").Get(gctx, p.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, ""
			}
			if err != nil {
				return false, err.Error()
			}
			return false, fmt.Sprintf("pod %s, deletionTimestamp %v", got.Status.Phase, got.DeletionTimestamp)
		})
		gcancel()
	}

	{ // restart reconciles
		_, fwsBefore := e.taskStates()
		orphan := e.createPod(ctx, "orphan", "")
		e.schedule(ctx, b, orphan)
		e.waitTask(ctx, orphan.UID, "TASK_RUNNING")

		// A second replica waits for leadership: it does not serve.
		standby := e.startBroker(ctx, "broker-2")
		if r, err := standby.health.Check(ctx, &healthpb.HealthCheckRequest{Service: brokerapi.ServiceName}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("the standby replica's health is %v (%v), want NOT_SERVING", r.GetStatus(), err)
		}
		if code, body := httpGet(ctx, standby.http+"/readyz?verbose"); code == http.StatusOK ||
			!strings.Contains(body, "[-]informer-sync failed") || !strings.Contains(body, "[-]mesos-subscription failed") {
			t.Errorf("/readyz?verbose of the standby answered %d, want it not ready, neither in sync nor subscribed:\n%s", code, body)
		}
		// A pod is reserved mid-scheduling when the leader goes away.
		midLaunch := e.createPod(ctx, "mid-launch", "")
		res := e.reserve(ctx, b, midLaunch)
		b.stop()
		// While no broker leads: a pod bound without a task, and a pod
		// deleted under its running task.
		lost := e.createPod(ctx, "never-launched", "agent-a")
		if err := e.kube.CoreV1().Pods("default").Delete(ctx, orphan.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		e.eventually(ctx, "the standby to take over and serve", func() (bool, string) {
			r, err := standby.health.Check(ctx, &healthpb.HealthCheckRequest{Service: brokerapi.ServiceName})
			if err != nil {
				return false, err.Error()
			}
			return r.GetStatus() == healthpb.HealthCheckResponse_SERVING, r.GetStatus().String()
		})
		// The old leader's reservation died with it: the launch is refused
		// (the scheduler retries the pod) and nothing runs for it.
		data, _ := json.Marshal(midLaunch)
		if _, err := standby.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: res.GetId(), Pod: data, PodContentType: "application/json"}); status.Code(err) != codes.NotFound {
			t.Errorf("launching the old leader's reservation on the new leader: %v, want NotFound", err)
		}
		e.schedule(ctx, standby, midLaunch)
		e.waitTask(ctx, midLaunch.UID, "TASK_RUNNING")
		e.waitPodPhase(ctx, lost.Name, corev1.PodFailed, "MesosTaskLost")
		e.waitTask(ctx, orphan.UID, "TASK_KILLED")
		ts, fws := e.taskStates()
		if fws != fwsBefore || fws != 1 {
			t.Errorf("Mesos knows %d frameworks after the restart (%d before), want the same one", fws, fwsBefore)
		}
		if ts[string(running.UID)] != "TASK_RUNNING" {
			t.Errorf("the running pod's task is %s after the restart, want TASK_RUNNING", ts[string(running.UID)])
		}
		p, err := e.kube.CoreV1().Pods("default").Get(ctx, running.Name, metav1.GetOptions{})
		if err != nil || p.Status.Phase == corev1.PodFailed {
			t.Errorf("the running pod after the restart: %v %v", p.Status.Phase, err)
		}
	}

	{ // agent lost: its Node goes NotReady; its pods are kept while their
		// tasks are TASK_UNREACHABLE (partition-aware: they may run on, and
		// Kubernetes evicts them on its own schedule)
		if err := e.sim.KillAgent(0); err != nil {
			t.Fatal(err)
		}
		e.waitTask(ctx, running.UID, "TASK_UNREACHABLE")
		e.eventually(ctx, "Node agent-a NotReady", func() (bool, string) {
			n, err := e.kube.CoreV1().Nodes().Get(ctx, "agent-a", metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					return c.Status == corev1.ConditionFalse && c.Reason == nodes.ReasonAgentLost, string(c.Status) + "/" + c.Reason
				}
			}
			return false, "no Ready condition"
		})
		if p, err := e.kube.CoreV1().Pods("default").Get(ctx, running.Name, metav1.GetOptions{}); err != nil {
			t.Errorf("the pod of the unreachable agent: %v, want it kept", err)
		} else if p.Status.Phase == corev1.PodFailed {
			t.Errorf("the pod of the unreachable agent is Failed (%s), want it kept", p.Status.Reason)
		}
	}
}

func httpGet(ctx context.Context, url string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mapKeys(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

// TestBrokerContainerLaunchFailure: when an agent cannot fetch the executor,
// Mesos 1.11 fails the task with TASK_FAILED and
// REASON_CONTAINER_LAUNCH_FAILED (slave.cpp executorLaunched), and the
// broker fails the pod saying so, so that its controller replaces it and
// the user sees why.
func TestBrokerContainerLaunchFailure(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	missing := httptest.NewServer(http.NotFoundHandler())
	defer missing.Close()
	e := newBrokerEnv(t, ctx, func(ac *agent.Config) { ac.Hollow = false })
	b := e.startBroker(ctx, "broker-1", func(o *app.Options) {
		o.ExecutorURIs = []string{missing.URL + "/k8sm/v1/k8sm-executor"}
	})
	p := e.createPod(ctx, "unfetchable", "")
	e.schedule(ctx, b, p)
	e.waitTask(ctx, p.UID, "TASK_FAILED")
	e.waitPodPhase(ctx, p.Name, corev1.PodFailed, "MesosTaskFailed")
	got, err := e.kube.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Failed to launch container", "Failed to fetch all URIs", "REASON_CONTAINER_LAUNCH_FAILED"} {
		if !strings.Contains(got.Status.Message, want) {
			t.Errorf("the failed pod's message %q does not say %q", got.Status.Message, want)
		}
	}
}
