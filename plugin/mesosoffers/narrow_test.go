package mesosoffers

import (
	"context"
	"fmt"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"
)

func preFilterNodes(t *testing.T, e *env, pod *v1.Pod, nodes ...fwk.NodeInfo) sets.Set[string] {
	t.Helper()
	res, st := e.pl.PreFilter(context.Background(), framework.NewCycleState(), pod, nodes)
	if !st.IsSuccess() {
		t.Fatalf("PreFilter: %v", st)
	}
	if res.AllNodes() {
		return nil
	}
	return res.NodeNames
}

func TestPreFilterNamesTheAgentsWithRoom(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a-small", "small", res(0.5, 4096)))
	e.offer(t, mkOffer("a-big", "big", res(4, 4096)))
	e.offer(t, mkOffer("a-big2", "big2", res(4, 4096)))

	pod := mkPod("2", "1Gi")
	pod.Spec.PreemptionPolicy = ptr.To(v1.PreemptNever)
	if got, want := preFilterNodes(t, e, pod), sets.New("big", "big2"); !got.Equal(want) {
		t.Errorf("NodeNames %v, want %v: agents whose offers are out need no Filter", sets.List(got), sets.List(want))
	}

	// With no agent holding the pod now (but one that could), PreFilter
	// must not name an empty set (the pod would be unresolvable): Filter
	// says per node what is short.
	for _, n := range []string{"big", "big2"} {
		p := mkPod("4", "1Gi")
		state, _, _ := e.schedule(t, p, n)
		if st := e.pl.Reserve(context.Background(), state, p, n); !st.IsSuccess() {
			t.Fatalf("Reserve on %s: %v", n, st)
		}
	}
	if got := preFilterNodes(t, e, pod); got != nil {
		t.Errorf("NodeNames %v with no agent holding the pod, want all nodes (nil)", sets.List(got))
	}
}

// TestPreFilterDoesNotNarrowForAPodThatFailed: nodes outside NodeNames are
// reported only as "didn't satisfy plugin(s) [MesosOffers]"; a pod that
// failed once is scanned in full so that its FailedScheduling event says
// per node what Mesos is short of.
func TestPreFilterDoesNotNarrowForAPodThatFailed(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a-small", "small", res(0.5, 4096)))
	e.offer(t, mkOffer("a-big", "big", res(4, 4096)))
	pod := mkPod("2", "1Gi")
	if got := preFilterNodes(t, e, pod); !got.Equal(sets.New("big")) {
		t.Fatalf("first attempt: NodeNames %v, want [big]", sets.List(got))
	}
	pod.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable}}
	if got := preFilterNodes(t, e, pod); got != nil {
		t.Errorf("a pod marked unschedulable: NodeNames %v, want all nodes (nil)", sets.List(got))
	}
}

func TestPreFilterKeepsNodesWherePreemptionCouldMakeRoom(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a-free", "free", res(4, 4096)))
	low := bound(mkPod("2", "1Gi"), "busy")
	e.pl.priorities.observe(low)
	busy := framework.NewNodeInfo(low)
	busy.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "busy"}, Spec: v1.NodeSpec{Taints: []v1.Taint{agentTaint}}}) // priority 0, its task holds the busy agent's resources
	free := nodeInfo("free", agentTaint)

	pod := mkPod("2", "1Gi")
	pod.Spec.Priority = ptr.To[int32](100)
	if got, want := preFilterNodes(t, e, pod, busy, free), sets.New("free", "busy"); !got.Equal(want) {
		t.Errorf("a pod that may preempt: NodeNames %v, want %v (nodes outside are never tried by preemption)", sets.List(got), sets.List(want))
	}
	pod.Spec.PreemptionPolicy = ptr.To(v1.PreemptNever)
	if got, want := preFilterNodes(t, e, pod, busy, free), sets.New("free"); !got.Equal(want) {
		t.Errorf("a pod that never preempts: NodeNames %v, want %v", sets.List(got), sets.List(want))
	}
	pod.Spec.PreemptionPolicy = nil
	pod.Spec.Priority = ptr.To[int32](0)
	if got, want := preFilterNodes(t, e, pod, busy, free), sets.New("free"); !got.Equal(want) {
		t.Errorf("a pod of the victims' priority: NodeNames %v, want %v", sets.List(got), sets.List(want))
	}
}

func TestNodeEventsRequeueOnlyPodsTheyHelp(t *testing.T) {
	e := newEnv(t)
	logger := klog.Background()
	node := func(taints ...v1.Taint) *v1.Node {
		return &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: v1.NodeSpec{Taints: taints}}
	}
	gpu := v1.Taint{Key: "gpu", Effect: v1.TaintEffectNoSchedule}
	pod := mkPod("1", "64Mi")
	tolerant := mkPod("1", "64Mi")
	tolerant.Spec.Tolerations = []v1.Toleration{{Key: "gpu", Operator: v1.TolerationOpExists}}
	tests := []struct {
		name     string
		pod      *v1.Pod
		old, new *v1.Node
		want     fwk.QueueingHint
	}{
		{"new agent", pod, nil, node(agentTaint), fwk.Queue},
		{"new node with an untolerated taint", pod, nil, node(agentTaint, gpu), fwk.QueueSkip},
		{"new node with a tolerated taint", tolerant, nil, node(agentTaint, gpu), fwk.Queue},
		{"untolerated taint removed", pod, node(agentTaint, gpu), node(agentTaint), fwk.Queue},
		{"taint added", pod, node(agentTaint), node(agentTaint, gpu), fwk.QueueSkip},
		{"tolerated taint removed", tolerant, node(agentTaint, gpu), node(agentTaint), fwk.QueueSkip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var old any
			if tt.old != nil {
				old = tt.old
			}
			got, err := e.pl.isSchedulableAfterNodeChange(logger, tt.pod, old, tt.new)
			if err != nil || got != tt.want {
				t.Errorf("hint %v (%v), want %v", got, err, tt.want)
			}
		})
	}
	events, err := e.pl.EventsToRegister(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if ev.Event.Resource == fwk.Node && ev.QueueingHintFn == nil {
			t.Errorf("node event %v has no QueueingHint: every taint change would requeue every parked pod", ev.Event)
		}
	}
}

// TestPreFilterNamesNoNodesWhenMostHoldThePod: naming costs the scheduler
// per name and attempt (it clones NodeNames and looks each name up), and
// when most of a cluster holds the pod it saves less Filter than that.
// With two thirds of the nodes or fewer holding it, PreFilter names them.
func TestPreFilterNamesNoNodesWhenMostHoldThePod(t *testing.T) {
	for _, tc := range []struct {
		offered int
		narrow  bool
	}{{offered: 100, narrow: true}, {offered: 120, narrow: false}, {offered: 150, narrow: false}} {
		named0, wide0, names0 := preFilterCount(t, preFilterNamed), preFilterCount(t, preFilterWide), namedNodesCount(t)
		e := newEnv(t)
		var nodes []fwk.NodeInfo
		want := sets.New[string]()
		for i := range 150 {
			name := fmt.Sprintf("n%03d", i)
			nodes = append(nodes, nodeInfo(name, agentTaint))
			if i < tc.offered {
				e.offer(t, mkOffer("a-"+name, name, res(4, 4096)))
				want.Insert(name)
			}
		}
		pod := mkPod("2", "1Gi")
		pod.Spec.PreemptionPolicy = ptr.To(v1.PreemptNever)
		got := preFilterNodes(t, e, pod, nodes...)
		switch {
		case tc.narrow && !got.Equal(want):
			t.Errorf("%d of 150 nodes offered: NodeNames has %d names, want the %d offered", tc.offered, got.Len(), want.Len())
		case !tc.narrow && got != nil:
			t.Errorf("%d of 150 nodes offered: NodeNames has %d names, want all nodes (nil)", tc.offered, got.Len())
		}
		// The scheduler's /metrics says which answer each attempt got.
		named, wide, names := preFilterCount(t, preFilterNamed)-named0, preFilterCount(t, preFilterWide)-wide0, namedNodesCount(t)-names0
		if tc.narrow && (named != 1 || wide != 0 || names != float64(want.Len())) {
			t.Errorf("%d of 150 nodes offered: metrics say %v named (%v names), %v wide; want 1 named of %d names", tc.offered, named, names, wide, want.Len())
		}
		if !tc.narrow && (named != 0 || wide != 1 || names != 0) {
			t.Errorf("%d of 150 nodes offered: metrics say %v named (%v names), %v wide; want 1 wide", tc.offered, named, names, wide)
		}
	}
}
