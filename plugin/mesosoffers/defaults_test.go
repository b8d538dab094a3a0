package mesosoffers

import (
	"context"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// A BestEffort pod is placed, launched with the broker's default charge, and
// its events say what it was charged.
func TestPodWithoutRequestsRunsAndSaysWhatItWasCharged(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(1, 512)))
	bindingsOf(e.handle, nil)
	ctx := context.Background()

	pod := mkPod("1", "1")
	pod.Spec.Containers[0].Resources = v1.ResourceRequirements{}
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
	if st := e.pl.Bind(ctx, state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Bind: %v", st)
	}
	launched, _ := e.broker.launcher.snapshot()
	if len(launched) != 1 {
		t.Fatalf("launched %d pods, want 1", len(launched))
	}
	e.broker.launcher.mu.Lock()
	task := e.broker.launcher.tasks[0]
	e.broker.launcher.mu.Unlock()
	if got, want := podresources.FromMesos(task.Resources)["*"].Scalars, podresources.DefaultPodScalars; got != want {
		t.Errorf("task resources %v, want the default %v", got, want)
	}
	select {
	case ev := <-e.handle.events.Events:
		for _, w := range []string{DefaultResourcesReason, "no cpu and memory", "0.25 cpus", "64 MB"} {
			if !strings.Contains(ev, w) {
				t.Errorf("event %q does not say %q", ev, w)
			}
		}
	default:
		t.Errorf("no event says what the pod was charged")
	}

	// A pod with requests gets no such event.
	e.offer(t, mkOffer("a1", "n1", res(1, 512)))
	full := mkPod("100m", "32Mi")
	state, _, _ = e.schedule(t, full, "n1")
	if st := e.pl.Reserve(ctx, state, full, "n1"); !st.IsSuccess() {
		t.Fatalf("Reserve: %v", st)
	}
	if st := e.pl.Bind(ctx, state, full, "n1"); !st.IsSuccess() {
		t.Fatalf("Bind: %v", st)
	}
	select {
	case ev := <-e.handle.events.Events:
		t.Errorf("pod with requests got event %q", ev)
	default:
	}
}
