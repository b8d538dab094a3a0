package mesosoffers

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// TestBindAdoptsEarlierAttemptOnAnotherNode: the broker died after the
// master took the ACCEPT of attempt 1 of a pod on n2; the restarted broker
// knows the task from reconciliation, and the scheduler, retrying the
// unbound pod, picked n1. Bind binds the pod to n2 as attempt 1 — where its
// task runs, the executor waiting for it — launches nothing, and says so on
// the pod: the pod stays one Mesos task.
func TestBindAdoptsEarlierAttemptOnAnotherNode(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(2, 4096)))
	e.offer(t, mkOffer("a2", "n2", res(2, 4096)))
	bindings := bindingsOf(e.handle, nil)
	ctx := context.Background()
	pod := mkPod("1", "64Mi")
	if _, err := e.handle.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	earlier := taskinfo.TaskID(pod.UID, "attempt-of-the-dead-broker")
	e.broker.launcher.mu.Lock()
	e.broker.launcher.live = map[string]string{earlier: "a2"}
	e.broker.launcher.mu.Unlock()

	state, _, _ := e.schedule(t, pod, "n1")
	if st := e.pl.Reserve(ctx, state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Reserve: %v", st)
	}
	if st := e.pl.Bind(ctx, state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Bind on n1 with attempt 1 live on n2: %v, want the pod bound as attempt 1", st)
	}
	if got := bindings(); got[pod.Name] != "n2" || got[pod.Name+"/task"] != earlier {
		t.Errorf("bindings %v, want %s bound to n2 as task %s", got, pod.Name, earlier)
	}
	launched, killed := e.broker.launcher.snapshot()
	if len(launched) != 0 || len(killed) != 0 {
		t.Errorf("launched %d tasks, killed %v: want neither", len(launched), killed)
	}
	found := false
	for len(e.handle.events.Events) > 0 && !found {
		ev := <-e.handle.events.Events
		found = strings.Contains(ev, earlier) && strings.Contains(ev, "n2")
	}
	if !found {
		t.Errorf("no event on the pod names the adopted task %s on n2", earlier)
	}
}
