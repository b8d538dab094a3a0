package mesosoffers

import (
	"context"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
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
