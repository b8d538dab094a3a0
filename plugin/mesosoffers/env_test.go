package mesosoffers

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/k8sm/k8sm/broker/grpcserver"
	"github.com/k8sm/k8sm/broker/launch"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// recordingLauncher stands in for the broker's Mesos side only: everything
// up to it is the real broker server and offer cache.
type recordingLauncher struct {
	mu       sync.Mutex
	launched []*v1.Pod
	tasks    []offers.Task
	killed   []string
	// live are the live tasks Mesos told of (reconciliation, statuses):
	// task id → agent id.
	live map[string]string
	// accepts counts the ACCEPTs.
	accepts int
}

func (l *recordingLauncher) Launch(_ context.Context, launch *offers.Launch, pods map[string]taskinfo.PodData) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.accepts++
	l.tasks = append(l.tasks, launch.Tasks...)
	for _, d := range pods {
		var p v1.Pod
		if err := json.Unmarshal(d.JSON, &p); err != nil {
			return fmt.Errorf("task data of pod %s: %w", d.Ref, err)
		}
		l.launched = append(l.launched, &p)
	}
	return nil
}

func (l *recordingLauncher) PodTasks(uid types.UID) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for id := range l.live {
		if taskinfo.PodUID(id) == uid {
			out = append(out, id)
		}
	}
	return out
}

func (l *recordingLauncher) TaskAgent(id string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live[id]
}

// Settle: no ACCEPT here ends without an answer.
func (l *recordingLauncher) Settle(context.Context, string, []string) (map[string]bool, error) {
	return nil, nil
}

func (l *recordingLauncher) Kill(_ context.Context, taskID, _ string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.killed = append(l.killed, taskID)
	return nil
}

func (l *recordingLauncher) snapshot() ([]*v1.Pod, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*v1.Pod(nil), l.launched...), append([]string(nil), l.killed...)
}

// fakeHandle provides what the plugin uses of the framework handle; calling
// anything else panics on the nil embedded interface, which is the point.
type fakeHandle struct {
	fwk.Handle
	client    *fake.Clientset
	activated chan map[string]*v1.Pod
	events    *events.FakeRecorder
	// informers is the scheduler's informer factory; nil unless a test
	// needs one.
	informers informers.SharedInformerFactory
}

func (h *fakeHandle) EventRecorder() events.EventRecorderLogger { return h.events }

func (h *fakeHandle) Activate(_ klog.Logger, pods map[string]*v1.Pod) { h.activated <- pods }
func (h *fakeHandle) ClientSet() clientset.Interface                  { return h.client }
func (h *fakeHandle) APICacher() fwk.APICacher                        { return nil }
func (h *fakeHandle) SharedInformerFactory() informers.SharedInformerFactory {
	return h.informers
}

// broker is the real Broker gRPC server on a loopback TCP port.
type broker struct {
	cache    *offers.Cache
	launcher *recordingLauncher
	server   *grpcserver.Server
	g        *grpc.Server
	addr     string
}

func startBroker(t testing.TB, addr string, opts ...grpc.ServerOption) *broker {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{cache: offers.New(offers.Config{}), launcher: &recordingLauncher{}, addr: lis.Addr().String()}
	b.server = grpcserver.New(b.cache, launch.New(b.cache, b.launcher, launch.Options{BatchWindow: 5 * time.Millisecond}))
	b.server.SetServing(true)
	b.g = grpc.NewServer(opts...)
	b.server.Register(b.g)
	go func() { _ = b.g.Serve(lis) }()
	t.Cleanup(b.g.Stop)
	return b
}

type env struct {
	broker *broker
	handle *fakeHandle
	pl     *MesosOffers
}

func newPlugin(t testing.TB, addr string, extraArgs string) (*MesosOffers, *fakeHandle) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &fakeHandle{client: fake.NewClientset(), activated: make(chan map[string]*v1.Pod, 100), events: events.NewFakeRecorder(100)}
	raw := fmt.Sprintf(`{"brokerAddresses":[%q],"reconnectMaxDelay":"100ms"%s}`, addr, extraArgs)
	p, err := New(ctx, &runtime.Unknown{Raw: []byte(raw), ContentType: runtime.ContentTypeJSON}, h)
	if err != nil {
		t.Fatal(err)
	}
	return p.(*MesosOffers), h
}

func newEnv(t testing.TB) *env {
	t.Helper()
	b := startBroker(t, "127.0.0.1:0")
	pl, h := newPlugin(t, b.addr, "")
	e := &env{broker: b, handle: h, pl: pl}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	return e
}

// waitFor polls a condition the plugin reaches asynchronously (the watch).
func (e *env) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// offer adds an offer and waits until the plugin's mirror shows it.
func (e *env) offer(t testing.TB, o mesos.Offer) {
	t.Helper()
	e.broker.cache.Add(o)
	want, _ := e.broker.cache.Agent(o.AgentID.Value)
	e.waitFor(t, "offer "+o.ID.Value+" in the mirror", func() bool {
		a := e.pl.mirror.get(o.Hostname)
		return a != nil && a.version >= want.Version
	})
}

var offerSeq int

func mkOffer(agentID, host string, r podresources.Resources, attrs ...mesos.Attribute) mesos.Offer {
	offerSeq++
	return mesos.Offer{
		ID:         mesos.OfferID{Value: fmt.Sprintf("offer-%d", offerSeq)},
		AgentID:    mesos.AgentID{Value: agentID},
		Hostname:   host,
		Resources:  podresources.ToMesos(r, "*"),
		Attributes: attrs,
	}
}

func res(cpus, memMB float64, ports ...podresources.Range) podresources.Resources {
	return podresources.Resources{
		Scalars: podresources.Scalars{CPUs: podresources.MilliFromFloat(cpus), MemMB: podresources.MilliFromFloat(memMB), DiskMB: 10240},
		Ports:   podresources.NewRanges(ports...),
	}
}

var podSeq int

func mkPod(cpu, mem string, ports ...v1.ContainerPort) *v1.Pod {
	podSeq++
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", podSeq), Namespace: "default", UID: types.UID(fmt.Sprintf("uid-%d", podSeq))},
		Spec: v1.PodSpec{
			SchedulerName: "mesos-scheduler",
			Containers: []v1.Container{{
				Name: "c", Image: "webapp", Ports: ports,
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
					v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem)}},
			}},
		},
	}
}

func nodeInfo(name string, taints ...v1.Taint) fwk.NodeInfo {
	ni := framework.NewNodeInfo()
	ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.NodeSpec{Taints: taints}})
	return ni
}

var agentTaint = v1.Taint{Key: taskinfo.AgentTaintKey, Effect: v1.TaintEffectNoSchedule}

// schedule runs PreFilter and Filter over the nodes as the framework does and
// returns the cycle state and each node's status (nil = fits).
func (e *env) schedule(t testing.TB, pod *v1.Pod, nodes ...string) (fwk.CycleState, *fwk.Status, map[string]*fwk.Status) {
	t.Helper()
	ctx := context.Background()
	state := framework.NewCycleState()
	_, st := e.pl.PreFilter(ctx, state, pod, nil)
	if !st.IsSuccess() {
		return state, st, nil
	}
	out := map[string]*fwk.Status{}
	for _, n := range nodes {
		out[n] = e.pl.Filter(ctx, state, pod, nodeInfo(n, agentTaint))
	}
	return state, nil, out
}

// bindingsOf records the Bindings the plugin creates (pod name: node, and
// "<pod name>/task": the task it records); fail makes them fail.
func bindingsOf(h *fakeHandle, fail error) func() map[string]string {
	var mu sync.Mutex
	got := map[string]string{}
	h.client.PrependReactor("create", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "binding" {
			return false, nil, nil
		}
		if fail != nil {
			return true, nil, fail
		}
		b := a.(clienttesting.CreateAction).GetObject().(*v1.Binding)
		mu.Lock()
		got[b.Name] = b.Target.Name
		if task, ok := b.Annotations[taskinfo.TaskIDAnnotation]; ok {
			got[b.Name+"/task"] = task
		}
		mu.Unlock()
		return true, b, nil
	})
	return func() map[string]string {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]string{}
		for k, v := range got {
			out[k] = v
		}
		return out
	}
}
