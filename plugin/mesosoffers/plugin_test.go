package mesosoffers

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

func wantReasons(t *testing.T, st *fwk.Status, code fwk.Code, reasons ...string) {
	t.Helper()
	if st.Code() != code {
		t.Fatalf("status %v %q, want %v", st.Code(), st.Message(), code)
	}
	if !slices.Equal(st.Reasons(), reasons) {
		t.Errorf("reasons %q, want %q", st.Reasons(), reasons)
	}
}

func TestFilterUsesTheMirroredOffers(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a-small", "small", res(0.5, 4096)))
	e.offer(t, mkOffer("a-big", "big", res(4, 4096)))

	_, st, nodes := e.schedule(t, mkPod("2", "1Gi"), "small", "big", "kubelet-node")
	if st != nil {
		t.Fatalf("PreFilter: %v", st)
	}
	wantReasons(t, nodes["small"], fwk.Unschedulable, "mesos: not enough cpus offered (2 requested)")
	if !nodes["big"].IsSuccess() {
		t.Errorf("big: %v, want fit", nodes["big"])
	}
	wantReasons(t, nodes["kubelet-node"], fwk.Unschedulable, "mesos: no outstanding offers from the node")
}

func TestPreFilterRejectsAPodNoAgentCanEverHold(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(1, 2048)))
	e.offer(t, mkOffer("a2", "n2", res(2, 1024)))
	_, st, _ := e.schedule(t, mkPod("8", "1Gi"), "n1", "n2")
	if st.Code() != fwk.Unschedulable || st.Message() != "mesos: the pod fits no agent: at most 2 cpus offered, 8 requested" {
		t.Fatalf("PreFilter = %v %q", st.Code(), st.Message())
	}
}

func TestHostPorts(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(4, 4096, podresources.Range{Begin: 31000, End: 31009})))
	e.offer(t, mkOffer("a2", "n2", res(4, 4096, podresources.Range{Begin: 80, End: 80})))
	_, st, nodes := e.schedule(t, mkPod("1", "64Mi", v1.ContainerPort{ContainerPort: 8080, HostPort: 31005}), "n1", "n2")
	if st != nil || !nodes["n1"].IsSuccess() {
		t.Errorf("offered host port: PreFilter %v, Filter %v", st, nodes["n1"])
	}
	wantReasons(t, nodes["n2"], fwk.Unschedulable, "mesos: host ports [31005-31005] not offered")
	_, _, nodes = e.schedule(t, mkPod("1", "64Mi", v1.ContainerPort{ContainerPort: 8080, HostPort: 80}), "n1", "n2")
	wantReasons(t, nodes["n1"], fwk.Unschedulable, "mesos: host ports [80-80] not offered")
	if !nodes["n2"].IsSuccess() {
		t.Errorf("port 80 on n2: %v", nodes["n2"])
	}
	// A port no agent ever offered is turned away before any node is tried.
	_, st, _ = e.schedule(t, mkPod("1", "64Mi", v1.ContainerPort{ContainerPort: 8080, HostPort: 443}), "n1", "n2")
	if st.Code() != fwk.Unschedulable || !strings.Contains(st.Message(), "host ports [443-443] not offered") {
		t.Errorf("never offered port: %v", st)
	}

	many := mkPod("1", "64Mi")
	e.offer(t, mkOffer("a3", "n3", res(4, 4096, podresources.Range{Begin: 20000, End: 29999})))
	many.Annotations = map[string]string{taskinfo.WildcardPortsAnnotation: "true"}
	for i := range 11 {
		many.Spec.Containers[0].Ports = append(many.Spec.Containers[0].Ports, v1.ContainerPort{ContainerPort: int32(8000 + i)})
	}
	_, _, nodes = e.schedule(t, many, "n1")
	wantReasons(t, nodes["n1"], fwk.Unschedulable, "mesos: fewer than 11 free ports offered")
}

func TestResourceArithmeticAsTheUserSeesIt(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(1, 1024)))
	// A big agent keeps PreFilter from turning the pods away, so that the
	// small one's Filter status shows the arithmetic.
	huge := res(64, 1<<20)
	huge.GPUs = 8000
	e.offer(t, mkOffer("a-huge", "huge", huge))
	q := resource.MustParse
	ctr := func(name string, req, lim v1.ResourceList) v1.Container {
		return v1.Container{Name: name, Resources: v1.ResourceRequirements{Requests: req, Limits: lim}}
	}
	always := v1.ContainerRestartPolicyAlways
	sidecar := ctr("sidecar", v1.ResourceList{v1.ResourceCPU: q("600m")}, nil)
	sidecar.RestartPolicy = &always
	tests := []struct {
		name string
		spec v1.PodSpec
		want []string // nil: fits
	}{
		{"init container maximum", v1.PodSpec{
			InitContainers: []v1.Container{ctr("init", v1.ResourceList{v1.ResourceCPU: q("3")}, nil)},
			Containers:     []v1.Container{ctr("c", v1.ResourceList{v1.ResourceCPU: q("500m")}, nil)},
		}, []string{"mesos: not enough cpus offered (3 requested)"}},
		{"init container below the containers' sum fits", v1.PodSpec{
			InitContainers: []v1.Container{ctr("init", v1.ResourceList{v1.ResourceCPU: q("900m")}, nil)},
			Containers:     []v1.Container{ctr("a", v1.ResourceList{v1.ResourceCPU: q("500m")}, nil), ctr("b", v1.ResourceList{v1.ResourceCPU: q("500m")}, nil)},
		}, nil},
		{"sidecar adds to the containers", v1.PodSpec{
			InitContainers: []v1.Container{sidecar},
			Containers:     []v1.Container{ctr("c", v1.ResourceList{v1.ResourceCPU: q("600m")}, nil)},
		}, []string{"mesos: not enough cpus offered (1.2 requested)"}},
		{"overhead", v1.PodSpec{
			Overhead:   v1.ResourceList{v1.ResourceCPU: q("200m"), v1.ResourceMemory: q("128Mi")},
			Containers: []v1.Container{ctr("c", v1.ResourceList{v1.ResourceCPU: q("900m"), v1.ResourceMemory: q("1Gi")}, nil)},
		}, []string{"mesos: not enough cpus offered (1.1 requested)", "mesos: not enough mem offered (1152 requested)"}},
		{"limits only", v1.PodSpec{
			Containers: []v1.Container{ctr("c", nil, v1.ResourceList{v1.ResourceMemory: q("2Gi")})},
		}, []string{"mesos: not enough mem offered (2048 requested)"}},
		{"gpus", v1.PodSpec{
			Containers: []v1.Container{ctr("c", v1.ResourceList{podresources.GPUResource: q("1")}, v1.ResourceList{podresources.GPUResource: q("1")})},
		}, []string{"mesos: not enough gpus offered (1 requested)"}},
		{"memory rounds up to whole kilobytes of a megabyte", v1.PodSpec{
			Containers: []v1.Container{ctr("c", v1.ResourceList{v1.ResourceMemory: q("1073741825")}, nil)},
		}, []string{"mesos: not enough mem offered (1024.001 requested)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := mkPod("0", "0")
			pod.Spec = tt.spec
			_, st, nodes := e.schedule(t, pod, "n1")
			if st != nil {
				t.Fatalf("PreFilter: %v", st)
			}
			if tt.want == nil {
				if !nodes["n1"].IsSuccess() {
					t.Fatalf("want fit, got %v", nodes["n1"])
				}
				return
			}
			wantReasons(t, nodes["n1"], fwk.Unschedulable, tt.want...)
		})
	}
}

func TestAgentTaintIsTolerated(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(4, 4096)))
	ctx := context.Background()
	pod := mkPod("1", "64Mi")
	state, _, _ := e.schedule(t, pod)
	if st := e.pl.Filter(ctx, state, pod, nodeInfo("n1", agentTaint)); !st.IsSuccess() {
		t.Errorf("agent taint: %v, want tolerated without a toleration", st)
	}
	other := v1.Taint{Key: "node.kubernetes.io/unreachable", Effect: v1.TaintEffectNoExecute}
	wantReasons(t, e.pl.Filter(ctx, state, pod, nodeInfo("n1", agentTaint, other)), fwk.UnschedulableAndUnresolvable, "node(s) had untolerated taint(s)")
	pod.Spec.Tolerations = []v1.Toleration{{Key: other.Key, Operator: v1.TolerationOpExists}}
	state, _, _ = e.schedule(t, pod) // PreFilter reads the tolerations
	if st := e.pl.Filter(ctx, state, pod, nodeInfo("n1", agentTaint, other)); !st.IsSuccess() {
		t.Errorf("tolerated other taint: %v", st)
	}
}

func TestReserveLaunchBind(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(2, 4096, podresources.Range{Begin: 31000, End: 31009})))
	bindings := bindingsOf(e.handle, nil)
	ctx := context.Background()

	pod := mkPod("1500m", "1Gi", v1.ContainerPort{Name: "http", ContainerPort: 8080})
	pod.Annotations = map[string]string{taskinfo.WildcardPortsAnnotation: "true"}
	if _, err := e.handle.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	state, _, nodes := e.schedule(t, pod, "n1")
	if !nodes["n1"].IsSuccess() {
		t.Fatalf("Filter: %v", nodes["n1"])
	}
	if st := e.pl.Reserve(ctx, state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Reserve: %v", st)
	}
	// The claim shows at once in the plugin's view, before the watch says so:
	// a second pod must not be placed on the claimed cpus.
	second := mkPod("1", "64Mi")
	_, _, nodes = e.schedule(t, second, "n1")
	wantReasons(t, nodes["n1"], fwk.Unschedulable, "mesos: not enough cpus offered (1 requested)")

	before := bindPhaseCounts(t)
	if st := e.pl.Bind(ctx, state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Bind: %v", st)
	}
	// Every phase ran once, the host ports' patch included (the pod has a
	// wildcard port): the scheduler's /metrics tells where the bind's time
	// went.
	after := bindPhaseCounts(t)
	for _, ph := range BindPhases {
		if n := after[ph] - before[ph]; n != 1 {
			t.Errorf("%s observations of phase %q after one Bind: %d, want 1", bindPhaseMetric, ph, n)
		}
	}
	launched, _ := e.broker.launcher.snapshot()
	if len(launched) != 1 {
		t.Fatalf("launched %d pods, want 1", len(launched))
	}
	// The Binding records the task the pod runs as (its launch attempt).
	if got, task := bindings(), taskinfo.TaskID(pod.UID, e.broker.launcher.tasks[0].ID); got[pod.Name] != "n1" || got[pod.Name+"/task"] != task {
		t.Errorf("bindings %v, want %s on n1 as task %s", got, pod.Name, task)
	}
	task := launched[0]
	if task.UID != pod.UID || task.Spec.NodeName != "n1" {
		t.Errorf("task pod uid %s node %q, want %s on n1", task.UID, task.Spec.NodeName, pod.UID)
	}
	as, err := podresources.PortAssignmentsOf(task)
	if err != nil || len(as) != 1 || as[0].HostPort != 31000 || as[0].ContainerPort != 8080 {
		t.Errorf("task host ports %+v (%v), want 8080 -> 31000", as, err)
	}
	apiPod, err := e.handle.client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if apiPod.Annotations[taskinfo.HostPortsAnnotation] != task.Annotations[taskinfo.HostPortsAnnotation] {
		t.Errorf("API pod host ports %q, task %q", apiPod.Annotations[taskinfo.HostPortsAnnotation], task.Annotations[taskinfo.HostPortsAnnotation])
	}
}

func TestFailedBindingKillsTheTask(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(2, 4096)))
	bindingsOf(e.handle, errors.New("pods \"x\" is being deleted"))
	ctx := context.Background()
	pod := mkPod("1", "64Mi")
	state, _, _ := e.schedule(t, pod, "n1")
	if st := e.pl.Reserve(ctx, state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Reserve: %v", st)
	}
	st := e.pl.Bind(ctx, state, pod, "n1")
	if st.IsSuccess() || !strings.Contains(st.Message(), "(killed)") {
		t.Fatalf("Bind = %v, want a failure saying the task was killed", st)
	}
	launched, killed := e.broker.launcher.snapshot()
	if task := taskinfo.TaskID(pod.UID, e.broker.launcher.tasks[0].ID); len(launched) != 1 || !slices.Equal(killed, []string{task}) {
		t.Errorf("launched %d, killed %v; want the launched task %s killed", len(launched), killed, task)
	}
}

func TestReserveRaceAndUnreserve(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(1, 4096)))
	ctx := context.Background()
	a, b := mkPod("1", "64Mi"), mkPod("1", "64Mi")
	sa, _, _ := e.schedule(t, a, "n1")
	sb, _, _ := e.schedule(t, b, "n1") // both saw the free cpu
	if st := e.pl.Reserve(ctx, sa, a, "n1"); !st.IsSuccess() {
		t.Fatalf("Reserve a: %v", st)
	}
	// The local claim stops the second pod before any broker round trip.
	wantReasons(t, e.pl.Reserve(ctx, sb, b, "n1"), fwk.Unschedulable, "mesos: not enough cpus offered (1 requested)")
	e.pl.Unreserve(ctx, sa, a, "n1")
	e.waitFor(t, "the broker to release a's reservation", func() bool {
		view, _ := e.broker.cache.Agent("a1")
		return view.Available["*"].CPUs == 1000
	})
	// Unreserve without a Reserve (the framework may call it) is harmless.
	e.pl.Unreserve(ctx, framework.NewCycleState(), b, "n1")
}

func TestNewOffersActivateWaitingPods(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(0.5, 4096)))
	pod := mkPod("2", "64Mi")
	_, st, _ := e.schedule(t, pod, "n1")
	if st == nil || st.Code() != fwk.Unschedulable {
		t.Fatalf("PreFilter = %v, want Unschedulable", st)
	}
	// An offer the pod does not fit in activates nothing...
	e.offer(t, mkOffer("a2", "n2", res(1, 4096)))
	select {
	case got := <-e.handle.activated:
		t.Fatalf("activated %v after an offer too small for the pod", got)
	default:
	}
	// ...one it fits in activates it, without any cluster event.
	e.broker.cache.Add(mkOffer("a3", "n3", res(4, 4096)))
	select {
	case got := <-e.handle.activated:
		if got[string(pod.UID)] != pod || len(got) != 1 {
			t.Fatalf("activated %v, want only %s", got, pod.Name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pod was not activated after a fitting offer arrived")
	}
	// A reserved pod is no longer waiting.
	state, _, _ := e.schedule(t, pod, "n3")
	if st := e.pl.Reserve(context.Background(), state, pod, "n3"); !st.IsSuccess() {
		t.Fatal(st)
	}
	if n := e.pl.parked.count(); n != 0 {
		t.Errorf("%d pods still parked after Reserve", n)
	}
}

func TestBrokerUnreachableThenBack(t *testing.T) {
	// Find a free port, then leave it closed.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()

	pl, h := newPlugin(t, addr, "")
	if _, err := New(context.Background(), &runtime.Unknown{Raw: []byte(`{"brokerAddresses":["` + addr + `"]}`)}, h); err != nil {
		t.Fatalf("an unreachable broker must not fail start-up (the scheduler would crash-loop): %v", err)
	}
	e := &env{pl: pl, handle: h}
	e.waitFor(t, "the watch to fail", func() bool { _, err := pl.mirror.state(); return strings.Contains(err.Error(), "watching offers") })
	pod := mkPod("1", "64Mi")
	_, st, _ := e.schedule(t, pod, "n1")
	if st.Code() != fwk.Unschedulable || !strings.Contains(st.Message(), "mesos: no offer view from the k8sm broker "+addr) {
		t.Fatalf("PreFilter = %v %q, want Unschedulable naming the broker", st.Code(), st.Message())
	}

	b := startBroker(t, addr)
	b.cache.Add(mkOffer("a1", "n1", res(2, 4096)))
	select {
	case got := <-h.activated:
		if got[string(pod.UID)] == nil {
			t.Fatalf("activated %v, want %s", got, pod.Name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting pod was not activated after the broker came back")
	}
	_, st, nodes := e.schedule(t, pod, "n1")
	if st != nil || !nodes["n1"].IsSuccess() {
		t.Fatalf("after reconnecting: PreFilter %v, Filter %v", st, nodes["n1"])
	}
}
