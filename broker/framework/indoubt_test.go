package framework_test

import (
	"context"
	"encoding/json"
	"sort"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// startSimNodes starts a master with one hollow agent per host.
func startSimNodes(t testing.TB, spec string, hosts ...string) *mesossim.Sim {
	t.Helper()
	res, err := mesossim.ParseResources(spec)
	if err != nil {
		t.Fatal(err)
	}
	var agents []agent.Config
	for _, h := range hosts {
		agents = append(agents, agent.Config{Hostname: h, Resources: res, Hollow: true, StatusUpdateRetryInterval: 200 * time.Millisecond})
	}
	sctx, scancel := context.WithCancel(context.Background())
	sim, err := mesossim.Start(sctx, mesossim.Config{
		WorkDir: t.TempDir(),
		Master:  master.Config{HeartbeatInterval: 200 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: 100 * time.Millisecond},
		Agents:  agents,
	})
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); scancel() })
	return sim
}

// reserveNode reserves for pod name on node, retrying until its offers
// arrived.
func reserveNode(t *testing.T, ctx context.Context, e *env, node, name string, uid types.UID) *brokerv1.Reservation {
	t.Helper()
	for {
		resp, err := e.broker.Reserve(ctx, &brokerv1.ReserveRequest{
			Pod:      &brokerv1.PodRef{Uid: string(uid), Namespace: "default", Name: name},
			NodeName: node,
			Demand:   &brokerv1.Demand{Cpus: 0.5, MemMb: 128},
		})
		if err == nil {
			return resp.GetReservation()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("reserving for %s on %s: %v", name, node, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// launchOn is the Launch the plugin sends for reservation r: the pod bound
// to r's node.
func launchOn(t *testing.T, ctx context.Context, e *env, r *brokerv1.Reservation) (*brokerv1.LaunchResponse, error) {
	t.Helper()
	b, err := json.Marshal(&v1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: r.GetPod().GetName(), Namespace: "default", UID: types.UID(r.GetPod().GetUid())},
		Spec:       v1.PodSpec{NodeName: r.GetNodeName(), Containers: []v1.Container{{Name: "c", Image: "webapp"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: b, PodContentType: "application/json"})
}

// podTasks are the master's tasks of pod uid, task id → state.
func podTasks(t *testing.T, e *env, uid types.UID) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, task := range masterTasks(t, e) {
		if id, _ := task["id"].(string); taskinfo.PodUID(id) == uid {
			out[id], _ = task["state"].(string)
		}
	}
	return out
}

// TestAcceptInDoubtNotLaunchedTwice: the master takes an ACCEPT but is too
// loaded to answer it, or the reconciliation that asks about its task, or
// to forward the task's statuses in time (the 5,000-agent bench). The
// scheduler places the pod again, on another agent. The pod must not end
// with two live tasks, and it must not be lost either: once Mesos answers,
// it runs as one task.
func TestAcceptInDoubtNotLaunchedTwice(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	sim := startSimNodes(t, "cpus:4;mem:4096;disk:10000;ports:[31000-32000]", "node-a", "node-b")
	e := startBroker(t, ctx, sim, brokerOpts{settleTimeout: 300 * time.Millisecond})
	const uid = types.UID("uid-1")
	r1 := reserveNode(t, ctx, e, "node-a", "web-1", uid)

	if err := sim.InjectCallFault(mesossim.CallFault{Type: scheduler.Call_ACCEPT, Count: 1, LoseAnswer: true}); err != nil {
		t.Fatal(err)
	}
	if err := sim.HoldUpdates(true); err != nil {
		t.Fatal(err)
	}
	if _, err := launchOn(t, ctx, e, r1); err == nil {
		t.Fatal("the launch whose ACCEPT and reconciliation got no answer succeeded, want it to fail (the pod is scheduled again)")
	} else {
		t.Logf("first attempt: %v", err)
	}

	// The scheduler places the pod again, now on node-b, while Mesos still
	// has not answered.
	r2 := reserveNode(t, ctx, e, "node-b", "web-1", uid)
	_, err := launchOn(t, ctx, e, r2)
	t.Logf("second attempt, while Mesos is silent: %v", err)
	if err := sim.HoldUpdates(false); err != nil {
		t.Fatal(err)
	}
	// The scheduler retries a refused pod until it launches.
	for err != nil {
		if c := status.Code(err); c != codes.Aborted && c != codes.Unavailable {
			t.Fatalf("launch of web-1: %v, want it refused retryably", err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("web-1 never launched once Mesos answered again (lost): %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		_, err = launchOn(t, ctx, e, reserveNode(t, ctx, e, "node-b", "web-1", uid))
	}

	// Wait for every task of the pod the master has to leave STAGING.
	var tasks map[string]string
	waitFor(t, ctx, "the pod's tasks to run or end", func() bool {
		tasks = podTasks(t, e, uid)
		running := false
		for _, st := range tasks {
			switch st {
			case "TASK_STAGING", "TASK_STARTING":
				return false
			case "TASK_RUNNING":
				running = true
			}
		}
		return running
	})
	var live []string
	for id, st := range tasks {
		if st == "TASK_RUNNING" {
			live = append(live, id)
		}
	}
	sort.Strings(live)
	if len(live) != 1 {
		t.Errorf("the master runs %d tasks of the pod %v (all its tasks: %v), want 1", len(live), live, tasks)
	}
}
