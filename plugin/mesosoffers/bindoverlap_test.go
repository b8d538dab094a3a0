package mesosoffers

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clienttesting "k8s.io/client-go/testing"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// TestHostPortsRecordedWhileTheBrokerAnswers: the host ports a pod's local
// claim chose are written to the API server while Bind waits for the
// broker's answer to Reserve, not after it: both are round trips, and the
// patch needs nothing the answer says. The pod is still launched and bound
// only once the broker granted the claim, with the ports recorded.
func TestHostPortsRecordedWhileTheBrokerAnswers(t *testing.T) {
	gate := newReserveGate()
	e := newGatedEnv(t, gate)
	e.offer(t, mkOffer("a1", "n1", res(2, 4096, podresources.Range{Begin: 31000, End: 31009})))
	bindings := bindingsOf(e.handle, nil)
	patched := make(chan struct{})
	var once sync.Once
	e.handle.client.PrependReactor("patch", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		once.Do(func() { close(patched) })
		return false, nil, nil // the tracker applies it
	})
	ctx := context.Background()

	pod := mkPod("1", "64Mi", v1.ContainerPort{Name: "http", ContainerPort: 8080})
	pod.Annotations = map[string]string{taskinfo.WildcardPortsAnnotation: "true"}
	state, reserved := e.reserveNew(t, pod, "n1")
	if st := <-reserved; !st.IsSuccess() {
		t.Fatalf("Reserve: %v", st)
	}
	bound := make(chan *fwk.Status, 1)
	go func() { bound <- e.pl.Bind(ctx, state, pod, "n1") }()
	select {
	case <-patched:
	case <-time.After(10 * time.Second): // a guard against a hang, not a speed limit
		t.Fatal("the host ports were not recorded while the broker's answer to Reserve was held")
	}
	if launched, _ := e.broker.launcher.snapshot(); len(launched) != 0 {
		t.Fatalf("launched %d pods before the broker answered Reserve", len(launched))
	}
	gate.release()
	if st := <-bound; !st.IsSuccess() {
		t.Fatalf("Bind: %v", st)
	}
	launched, _ := e.broker.launcher.snapshot()
	if len(launched) != 1 || bindings()[pod.Name] != "n1" {
		t.Fatalf("launched %d, bindings %v: want the pod launched and bound on n1", len(launched), bindings())
	}
	apiPod, err := e.handle.client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := apiPod.Annotations[taskinfo.HostPortsAnnotation], launched[0].Annotations[taskinfo.HostPortsAnnotation]; got == "" || got != want {
		t.Errorf("API pod host ports %q, the task's %q: want the same, recorded", got, want)
	}
}

// TestLaunchWaitsForTheAgentsReserveInFlight: a and b are claimed on the
// same agent one after the other; b's Reserve is still on its way to the
// broker when a's Bind would launch. An ACCEPT takes the agent's offer
// whole, so a launched at once would take the resources b's claim rests on
// and fail b's bind. a's launch waits for b's answer instead, and both go
// in one ACCEPT.
func TestLaunchWaitsForTheAgentsReserveInFlight(t *testing.T) {
	hold := make(chan struct{})
	var heldPod atomic.Value
	b := startBroker(t, "127.0.0.1:0", grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if r, ok := req.(*brokerv1.ReserveRequest); ok && r.GetPod().GetName() == heldPod.Load() {
			<-hold
		}
		return h(ctx, req)
	}))
	pl, h := newPlugin(t, b.addr, "")
	e := &env{broker: b, handle: h, pl: pl}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	e.offer(t, mkOffer("a1", "n1", res(2, 4096)))
	bindings := bindingsOf(e.handle, nil)
	ctx := context.Background()

	pa, pb := mkPod("500m", "64Mi"), mkPod("500m", "64Mi")
	heldPod.Store(pb.Name)
	sa, ra := e.reserveNew(t, pa, "n1")
	if st := <-ra; !st.IsSuccess() {
		t.Fatalf("Reserve a: %v", st)
	}
	sb, rb := e.reserveNew(t, pb, "n1")
	if st := <-rb; !st.IsSuccess() {
		t.Fatalf("Reserve b (the local claim): %v", st)
	}
	boundA, boundB := make(chan *fwk.Status, 1), make(chan *fwk.Status, 1)
	go func() { boundA <- pl.Bind(ctx, sa, pa, "n1") }()
	go func() { boundB <- pl.Bind(ctx, sb, pb, "n1") }()
	// Launching a alone takes milliseconds; it has two seconds to do so
	// (a bound on the wait, not a speed limit: it must not happen at all).
	_ = wait.PollUntilContextTimeout(ctx, time.Millisecond, 2*time.Second, true, func(context.Context) (bool, error) {
		l, _ := b.launcher.snapshot()
		return len(l) > 0, nil
	})
	close(hold)
	stA, stB := <-boundA, <-boundB
	if !stA.IsSuccess() || !stB.IsSuccess() {
		t.Fatalf("Bind a: %v, Bind b: %v; want both bound", stA, stB)
	}
	b.launcher.mu.Lock()
	accepts, tasks := b.launcher.accepts, len(b.launcher.tasks)
	b.launcher.mu.Unlock()
	if accepts != 1 || tasks != 2 {
		t.Errorf("%d tasks in %d ACCEPTs, want both pods in one", tasks, accepts)
	}
	if got := bindings(); got[pa.Name] != "n1" || got[pb.Name] != "n1" {
		t.Errorf("bindings %v, want both on n1", got)
	}
}
