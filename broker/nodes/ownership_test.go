package nodes

import (
	"context"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// A Mesos agent registering under the hostname of a Node the broker did not
// create (an ordinary worker's) must not take it over: no taint, no agent
// annotation, no Lease or status writes (its loss would evict the worker's
// pods), and the agent takes no pods.
func TestAgentDoesNotAdoptForeignNode(t *testing.T) {
	client := apiServerLike(t, false)
	ctx := context.Background()
	worker := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1", Labels: map[string]string{"team": "payments"}},
		Status: v1.NodeStatus{Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady"}}}}
	if _, err := client.CoreV1().Nodes().Create(ctx, worker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, ctx := startedMirror(t, client)
	cache := m.cfg.Cache
	m.AgentOffered(ctx, &mesos.Offer{AgentID: mesos.AgentID{Value: "S-evil"}, Hostname: "worker-1"})
	m.next(ctx)
	m.AgentLost(ctx, "S-evil")
	m.next(ctx)

	got, err := client.CoreV1().Nodes().Get(ctx, "worker-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Taints) != 0 || got.Annotations[taskinfo.AgentIDAnnotation] != "" || got.Labels[OwnerLabel] != "" {
		t.Errorf("the worker's Node was taken over: taints %v, annotations %v, labels %v", got.Spec.Taints, got.Annotations, got.Labels)
	}
	if c := got.Status.Conditions; len(c) != 1 || c[0].Status != v1.ConditionTrue || c[0].Reason != "KubeletReady" {
		t.Errorf("the worker's Node status was rewritten: %v", c)
	}
	if _, err := client.CoordinationV1().Leases(leaseNamespace).Get(ctx, "worker-1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the broker wrote the worker's Lease: %v", err)
	}
	if v, _ := cache.Agent("S-evil"); v.Draining == "" {
		t.Errorf("the clashing agent takes pods (view %+v), want it draining", v)
	}
	// Events are sent in the background.
	err = wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		evs, err := client.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.Reason == ReasonHostnameClash && e.InvolvedObject.Name == "worker-1" && strings.Contains(e.Message, "S-evil") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no %s event on Node worker-1 names the agent: %v", ReasonHostnameClash, err)
	}
}

// The broker keeps the Nodes it created across restarts and agent id
// changes: the mark, not the agent id, says whose Node it is.
func TestOwnNodeIsKeptForANewAgentID(t *testing.T) {
	client := apiServerLike(t, false)
	m, ctx := startedMirror(t, client)
	m.AgentOffered(ctx, &mesos.Offer{AgentID: mesos.AgentID{Value: "S1"}, Hostname: "h1"})
	m.next(ctx)
	m.AgentOffered(ctx, &mesos.Offer{AgentID: mesos.AgentID{Value: "S2"}, Hostname: "h1"})
	m.next(ctx)
	got, err := client.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Labels[OwnerLabel] != Owner || got.Annotations[taskinfo.AgentIDAnnotation] != "S2" {
		t.Errorf("labels %v annotations %v: want the broker's mark and the new agent id", got.Labels, got.Annotations)
	}
}

// TestGoneAgentsNodeIsDeleted: an agent marked gone loses its Node (so its
// DaemonSet pods go), and nothing brings the Node back; a Node the broker
// did not create, or one a new agent took over under the same hostname,
// stays.
func TestGoneAgentsNodeIsDeleted(t *testing.T) {
	client := apiServerLike(t, false)
	ctx := context.Background()
	worker := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1",
		Annotations: map[string]string{taskinfo.AgentIDAnnotation: "S9"}}}
	if _, err := client.CoreV1().Nodes().Create(ctx, worker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, ctx := startedMirror(t, client)
	drain := func() {
		for m.queue.Len() > 0 {
			m.next(ctx)
		}
	}
	for _, a := range []struct{ id, host string }{{"S1", "h1"}, {"S2", "h2"}, {"S4", "h4"}, {"S5", "h4"}} {
		m.AgentOffered(ctx, &mesos.Offer{AgentID: mesos.AgentID{Value: a.id}, Hostname: a.host})
		drain()
	}
	for _, n := range []string{"h1", "h2", "h4"} {
		waitCached(t, m, n, func(*v1.Node) bool { return true })
	}
	waitCached(t, m, "h4", func(n *v1.Node) bool { return n.Annotations[taskinfo.AgentIDAnnotation] == "S5" })

	m.AgentGone(ctx, "S1")
	m.AgentGone(ctx, "S9") // the worker's forged annotation
	m.AgentGone(ctx, "S4") // h4 is S5's now
	drain()
	// What the framework reports after the statuses (FAILURE), a resync,
	// or an offer that crossed the news must not bring the Node back.
	m.AgentLost(ctx, "S1")
	m.queue.Add("S1")
	m.AgentOffered(ctx, &mesos.Offer{AgentID: mesos.AgentID{Value: "S1"}, Hostname: "h1"})
	drain()

	if _, err := client.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Node of gone agent S1: %v, want it deleted", err)
	}
	for _, n := range []string{"h2", "h4", "worker-1"} {
		if _, err := client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{}); err != nil {
			t.Errorf("Node %s: %v, want it kept", n, err)
		}
	}
}
