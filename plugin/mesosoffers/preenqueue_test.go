package mesosoffers

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/backend/queue"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// queueHandle activates pods in a real scheduling queue, the scheduler's
// own, so that the tests see where a pod PreEnqueue held back ends up.
type queueHandle struct {
	*fakeHandle
	q atomic.Pointer[queue.PriorityQueue]
}

func (h *queueHandle) Activate(logger klog.Logger, pods map[string]*v1.Pod) {
	h.q.Load().Activate(logger, pods)
}

// queueEnv is a plugin on a real broker and the upstream scheduling queue
// with the plugin as its only PreEnqueue plugin.
type queueEnv struct {
	*env
	q *queue.PriorityQueue
}

func newQueueEnv(t *testing.T, extraArgs string) *queueEnv {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	b := startBroker(t, "127.0.0.1:0")
	h := &queueHandle{fakeHandle: &fakeHandle{client: fake.NewClientset(), activated: make(chan map[string]*v1.Pod, 100), events: events.NewFakeRecorder(100)}}
	raw := fmt.Sprintf(`{"brokerAddresses":[%q],"reconnectMaxDelay":"100ms"%s}`, b.addr, extraArgs)
	p, err := New(ctx, &kruntime.Unknown{Raw: []byte(raw), ContentType: kruntime.ContentTypeJSON}, h)
	if err != nil {
		t.Fatal(err)
	}
	pl := p.(*MesosOffers)
	q := queue.NewTestQueue(ctx, func(fwk.QueuedEntityInfo, fwk.QueuedEntityInfo) bool { return false },
		queue.WithPreEnqueuePluginMap(map[string]map[string]fwk.PreEnqueuePlugin{"mesos-scheduler": {Name: pl}}))
	t.Cleanup(q.Close)
	h.q.Store(q)
	e := &queueEnv{env: &env{broker: b, handle: h.fakeHandle, pl: pl}, q: q}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	return e
}

func has(pods []*v1.Pod, p *v1.Pod) bool {
	return slices.ContainsFunc(pods, func(q *v1.Pod) bool { return q.UID == p.UID })
}

// A pod no agent's offers hold is kept out of the active queue, saying
// why; the offer that holds it brings it in, through the offer watch's
// activation and PreEnqueue again. A pod that fits goes straight in.
func TestPreEnqueueHoldsPodUntilOffersHoldIt(t *testing.T) {
	e := newQueueEnv(t, `,"preemptionDelay":"1h"`)
	ctx := context.Background()
	e.offer(t, mkOffer("a1", "n1", res(1, 1024)))

	big := mkPod("2", "64Mi")
	st := e.pl.PreEnqueue(ctx, big)
	if st.IsSuccess() || !strings.Contains(st.Message(), "no agent's offers hold the pod") || !strings.Contains(st.Message(), "preemptionDelay 1h0m0s") {
		t.Fatalf("PreEnqueue of a pod no offer holds: %v %q, want it held back, saying why and for how long at most", st.Code(), st.Message())
	}
	e.q.Add(ctx, big)
	small := mkPod("500m", "64Mi")
	e.q.Add(ctx, small)
	if active := e.q.PodsInActiveQ(); has(active, big) || !has(active, small) {
		t.Fatalf("active queue %v: want %s (fits a1) and not %s (fits no offer)", names(active), small.Name, big.Name)
	}
	if !has(e.q.UnschedulablePods(), big) {
		t.Fatalf("unschedulable pods %v, want %s held there", names(e.q.UnschedulablePods()), big.Name)
	}

	// An offer too small for it changes nothing.
	e.offer(t, mkOffer("a2", "n2", res(1, 4096)))
	if has(e.q.PodsInActiveQ(), big) {
		t.Fatalf("%s entered the active queue on an offer that cannot hold it", big.Name)
	}
	e.offer(t, mkOffer("a3", "n3", res(4, 4096)))
	e.waitFor(t, big.Name+" in the active queue", func() bool { return has(e.q.PodsInActiveQ(), big) })
	if st := e.pl.PreEnqueue(ctx, big); !st.IsSuccess() {
		t.Errorf("PreEnqueue once n3 offers 4 cpus: %v %q, want the pod let through", st.Code(), st.Message())
	}
}

func names(pods []*v1.Pod) []string {
	out := make([]string, 0, len(pods))
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// PreEnqueue holds a pod back for PreemptionDelay at most: then it enters
// the active queue, and its cycle may preempt at once (PostFilter counts
// the same wait).
func TestPreEnqueueLetsPodThroughAfterPreemptionDelay(t *testing.T) {
	e := newQueueEnv(t, `,"preemptionDelay":"300ms"`)
	ctx := context.Background()
	// 4 cpus, 3 of them taken: preempting may make room.
	e.fullAgent(t, "a1", "n1", res(4, 1024), res(1, 1024))

	pod := mkPod("2", "64Mi")
	e.q.Add(ctx, pod)
	if has(e.q.PodsInActiveQ(), pod) {
		t.Fatalf("%s entered the active queue though no offer holds it", pod.Name)
	}
	e.waitFor(t, pod.Name+" in the active queue after preemptionDelay", func() bool { return has(e.q.PodsInActiveQ(), pod) })
	if st := e.pl.PreEnqueue(ctx, pod); !st.IsSuccess() {
		t.Errorf("PreEnqueue after preemptionDelay: %v %q, want the pod let through", st.Code(), st.Message())
	}
	state := framework.NewCycleState()
	if _, st := e.pl.PreFilter(ctx, state, pod, nil); !st.IsSuccess() {
		t.Fatalf("PreFilter: %v", st)
	}
	if _, st := e.pl.PostFilter(ctx, state, pod, nil); st.Code() != fwk.Unschedulable {
		t.Errorf("PostFilter of the pod's first cycle: %v %q, want Unschedulable (preemption may run: it waited in PreEnqueue)", st.Code(), st.Message())
	}
}

// Nothing is held while the offer view cannot be trusted (no offer event
// would wake the pod), nor with preemptionDelay 0.
func TestPreEnqueueHoldsNothingWithoutOfferView(t *testing.T) {
	ctx := context.Background()
	// Nothing listens on the broker's address: the view never syncs.
	pl, _ := newPlugin(t, "127.0.0.1:1", "")
	if st := pl.PreEnqueue(ctx, mkPod("2", "64Mi")); !st.IsSuccess() {
		t.Errorf("PreEnqueue before the view synced: %v %q, want the pod let through", st.Code(), st.Message())
	}

	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(1, 1024)))
	if st := e.pl.PreEnqueue(ctx, mkPod("2", "64Mi")); st.IsSuccess() {
		t.Fatal("PreEnqueue of a pod no offer holds, the view synced: let through, want it held back")
	}
	e.broker.g.Stop()
	e.waitFor(t, "the view to be dropped", func() bool { ok, _ := e.pl.mirror.state(); return !ok })
	if st := e.pl.PreEnqueue(ctx, mkPod("2", "64Mi")); !st.IsSuccess() {
		t.Errorf("PreEnqueue with the broker gone: %v %q, want the pod let through", st.Code(), st.Message())
	}

	b := startBroker(t, "127.0.0.1:0")
	pl, _ = newPlugin(t, b.addr, `,"preemptionDelay":"0s"`)
	(&env{pl: pl}).waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	if st := pl.PreEnqueue(ctx, mkPod("2", "64Mi")); !st.IsSuccess() {
		t.Errorf("PreEnqueue with preemptionDelay 0: %v %q, want the pod let through (it may preempt at once)", st.Code(), st.Message())
	}
}

// BenchmarkPreEnqueue is PreEnqueue at 1,000 agents, half of them with
// offers, for a pod that fits (let through), one no agent holds (held
// back: parked, its wait timed), and pods of more shapes than the fit
// index keeps (each one fits every agent afresh: the worst case).
//
//	go test -run '^$' -bench PreEnqueue ./plugin/mesosoffers
func BenchmarkPreEnqueue(b *testing.B) {
	for _, kind := range []string{"fits", "held", "shape-churn"} {
		b.Run("agents=1000/pod="+kind, func(b *testing.B) {
			c := newBenchCluster(b, 1000)
			pods := make([]*v1.Pod, 64)
			for i := range pods {
				pods[i] = benchPod(i, 0)
				cpu := "10m"
				switch kind {
				case "held":
					cpu = "16"
				case "shape-churn":
					cpu = fmt.Sprintf("%dm", 10+i)
				}
				pods[i].Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse(cpu)
			}
			ctx := context.Background()
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				pod := pods[i%len(pods)]
				st := c.pl.PreEnqueue(ctx, pod)
				if st.IsSuccess() == (kind == "held") {
					b.Fatalf("pod %s: %v", kind, st)
				}
				if kind == "held" {
					c.pl.parked.unpark(pod.UID)
					c.pl.waiters.done(pod.UID)
				}
			}
		})
	}
}
