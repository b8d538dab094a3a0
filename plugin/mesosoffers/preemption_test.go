package mesosoffers

import (
	"context"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// bound is a pod whose task runs on node.
func bound(p *v1.Pod, node string) *v1.Pod {
	p.Spec.NodeName = node
	p.Status.Phase = v1.PodRunning
	return p
}

func podInfo(t *testing.T, p *v1.Pod) fwk.PodInfo {
	t.Helper()
	pi, err := framework.NewPodInfo(p)
	if err != nil {
		t.Fatal(err)
	}
	return pi
}

// preFilter runs PreFilter for pod and returns the cycle state.
func (e *env) preFilter(t *testing.T, pod *v1.Pod) fwk.CycleState {
	t.Helper()
	state := framework.NewCycleState()
	if _, st := e.pl.PreFilter(context.Background(), state, pod, nil); !st.IsSuccess() {
		t.Fatalf("PreFilter: %v", st)
	}
	return state
}

func (e *env) filter(state fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	return e.pl.Filter(context.Background(), state, pod, nodeInfo(node, agentTaint))
}

func (e *env) removePod(t *testing.T, state fwk.CycleState, pod, victim *v1.Pod, node string) {
	t.Helper()
	if st := e.pl.PreFilterExtensions().RemovePod(context.Background(), state, pod, podInfo(t, victim), nodeInfo(node)); !st.IsSuccess() {
		t.Fatalf("RemovePod: %v", st)
	}
}

func (e *env) addPod(t *testing.T, state fwk.CycleState, pod, added *v1.Pod, node string) {
	t.Helper()
	if st := e.pl.PreFilterExtensions().AddPod(context.Background(), state, pod, podInfo(t, added), nodeInfo(node)); !st.IsSuccess() {
		t.Fatalf("AddPod: %v", st)
	}
}

// fullAgent makes agent host hold capacity once and offer only left now, as
// an agent whose tasks took the rest.
func (e *env) fullAgent(t *testing.T, id, host string, capacity, left podresources.Resources) {
	t.Helper()
	first := mkOffer(id, host, capacity)
	e.offer(t, first)
	e.broker.cache.Rescind(first.ID.Value)
	e.offer(t, mkOffer(id, host, left))
}

// The dry run of preemption, step by step as SelectVictimsOnNode takes it:
// removing a victim bound to the agent gives its task's resources back,
// adding it back takes them again, and the state of one node's dry run is
// not the state of another's.
func TestDryRunCountsAVictimsTaskAsComingBack(t *testing.T) {
	e := newEnv(t)
	e.fullAgent(t, "a1", "n1", res(2, 4096), res(0.5, 3072))
	e.fullAgent(t, "a2", "n2", res(2, 4096), res(0.5, 3072))
	preemptor := mkPod("1500m", "512Mi")
	victim := bound(mkPod("1", "512Mi"), "n1")
	other := bound(mkPod("500m", "512Mi"), "n1")

	state := e.preFilter(t, preemptor)
	wantReasons(t, e.filter(state, preemptor, "n1"), fwk.Unschedulable, "mesos: not enough cpus offered (1.5 requested)")

	dry := state.Clone()
	e.removePod(t, dry, preemptor, other, "n1")
	e.removePod(t, dry, preemptor, victim, "n1")
	if st := e.filter(dry, preemptor, "n1"); !st.IsSuccess() {
		t.Fatalf("with both victims removed: %v, want fit", st)
	}
	// Reprieve: the smaller victim back; 0.5 + 1 cpus still hold the pod.
	e.addPod(t, dry, preemptor, other, "n1")
	if st := e.filter(dry, preemptor, "n1"); !st.IsSuccess() {
		t.Errorf("with %s reprieved: %v, want fit", other.Name, st)
	}
	// The bigger one back too: no room any more, so it stays a victim.
	e.addPod(t, dry, preemptor, victim, "n1")
	wantReasons(t, e.filter(dry, preemptor, "n1"), fwk.Unschedulable, "mesos: not enough cpus offered (1.5 requested)")

	// Another node's dry run and the cycle's own state saw none of it.
	wantReasons(t, e.filter(state, preemptor, "n1"), fwk.Unschedulable, "mesos: not enough cpus offered (1.5 requested)")
	dry2 := state.Clone()
	e.removePod(t, dry2, preemptor, victim, "n1")
	wantReasons(t, e.filter(dry2, preemptor, "n2"), fwk.Unschedulable, "mesos: not enough cpus offered (1.5 requested)")
	if st := e.filter(dry2, preemptor, "n1"); !st.IsSuccess() {
		t.Errorf("n1 with the victim removed in a second dry run: %v, want fit", st)
	}
}

// A victim's task holds its host ports, fixed and chosen by k8sm, and
// gives them back in the dry run.
func TestDryRunGivesBackAVictimsHostPorts(t *testing.T) {
	e := newEnv(t)
	all := podresources.Range{Begin: 31000, End: 31001}
	e.fullAgent(t, "a1", "n1", res(4, 4096, all), res(2, 2048))
	victim := bound(mkPod("1", "64Mi", v1.ContainerPort{ContainerPort: 80, HostPort: 31000}, v1.ContainerPort{ContainerPort: 81}), "n1")
	victim.Annotations = map[string]string{taskinfo.WildcardPortsAnnotation: "true"}
	if err := podresources.RecordPortAssignments(victim, []podresources.PortAssignment{{PortRef: podresources.PortRef{Container: "c", ContainerPort: 81, Protocol: v1.ProtocolTCP}, HostPort: 31001}}); err != nil {
		t.Fatal(err)
	}

	for _, port := range []int32{31000, 31001} {
		preemptor := mkPod("1", "64Mi", v1.ContainerPort{ContainerPort: 8080, HostPort: port})
		state := e.preFilter(t, preemptor)
		if st := e.filter(state, preemptor, "n1"); st.IsSuccess() {
			t.Fatalf("port %d fits before the dry run", port)
		}
		e.removePod(t, state, preemptor, victim, "n1")
		if st := e.filter(state, preemptor, "n1"); !st.IsSuccess() {
			t.Errorf("port %d with the victim removed: %v, want fit", port, st)
		}
	}
}

// Only a task on the agent comes back: a pod bound elsewhere, or one whose
// task ended (its resources are offered already), frees nothing.
func TestDryRunFreesOnlyRunningTasksOfTheAgent(t *testing.T) {
	e := newEnv(t)
	e.fullAgent(t, "a1", "n1", res(2, 4096), res(0.5, 3072))
	preemptor := mkPod("1500m", "512Mi")
	elsewhere := bound(mkPod("1", "512Mi"), "n2")
	ended := bound(mkPod("1", "512Mi"), "n1")
	ended.Status.Phase = v1.PodSucceeded

	state := e.preFilter(t, preemptor)
	e.removePod(t, state, preemptor, elsewhere, "n1")
	e.removePod(t, state, preemptor, ended, "n1")
	wantReasons(t, e.filter(state, preemptor, "n1"), fwk.Unschedulable, "mesos: not enough cpus offered (1.5 requested)")
}

// A pod nominated to an agent (after its preemption) has the room it needs
// kept from pods of lower priority: the scheduler adds it before filtering
// them there, and it takes its demand from the agent's offers, whether they
// hold it yet or not.
func TestNominatedPodKeepsItsRoom(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(2, 4096)))
	nominated := mkPod("1500m", "512Mi")
	low := mkPod("1", "512Mi")

	state := e.preFilter(t, low)
	if st := e.filter(state, low, "n1"); !st.IsSuccess() {
		t.Fatalf("without the nominated pod: %v, want fit", st)
	}
	withNominated := state.Clone()
	e.addPod(t, withNominated, low, nominated, "n1")
	wantReasons(t, e.filter(withNominated, low, "n1"), fwk.Unschedulable, "mesos: not enough cpus offered (1 requested)")
	e.removePod(t, withNominated, low, nominated, "n1")
	if st := e.filter(withNominated, low, "n1"); !st.IsSuccess() {
		t.Errorf("nominated pod removed again: %v, want fit", st)
	}

	// Offers that do not hold the nominated pod yet (its victims' tasks
	// are still ending) are kept for it too.
	e.fullAgent(t, "a2", "n2", res(2, 4096), res(1, 4096))
	small := mkPod("500m", "64Mi")
	state = e.preFilter(t, small)
	e.addPod(t, state, small, nominated, "n2")
	wantReasons(t, e.filter(state, small, "n2"), fwk.Unschedulable, "mesos: not enough cpus offered (0.5 requested)")
}

// A pod preempts only after it waited preemptionDelay for offers: until
// then PostFilter ends the PostFilter phase (UnschedulableAndUnresolvable),
// and the pod is activated when the delay is over, so that its next cycle
// may preempt.
func TestPreemptionWaitsForOffers(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	pl, h := newPlugin(t, b.addr, `,"preemptionDelay":"300ms"`)
	e := &env{broker: b, handle: h, pl: pl}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	e.fullAgent(t, "a1", "n1", res(4, 1024), res(1, 1024))
	pod := mkPod("2", "64Mi")
	ctx := context.Background()

	state := e.preFilter(t, pod)
	_, st := pl.PostFilter(ctx, state, pod, nil)
	if st.Code() != fwk.UnschedulableAndUnresolvable {
		t.Fatalf("PostFilter at once: %v %q, want UnschedulableAndUnresolvable", st.Code(), st.Message())
	}
	select {
	case got := <-h.activated:
		if got[string(pod.UID)] == nil {
			t.Fatalf("activated %v, want %s", got, pod.Name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pod was not activated after the delay")
	}
	if _, st := pl.PostFilter(ctx, e.preFilter(t, pod), pod, nil); st.Code() != fwk.Unschedulable {
		t.Errorf("PostFilter after the delay: %v %q, want Unschedulable (preemption may run)", st.Code(), st.Message())
	}

	// A pod on the node it is nominated to was deleted (its victim): its
	// resources are on their way back, so the pod waits again rather than
	// preempting a second victim.
	pod.Status.NominatedNodeName = "n1"
	pl.waiters.deleted("n1", time.Now())
	if _, st := pl.PostFilter(ctx, e.preFilter(t, pod), pod, nil); st.Code() != fwk.UnschedulableAndUnresolvable {
		t.Errorf("PostFilter right after a pod on the nominated node was deleted: %v %q, want UnschedulableAndUnresolvable", st.Code(), st.Message())
	}
	select {
	case <-h.activated:
	case <-time.After(10 * time.Second):
		t.Fatal("the pod was not activated after the second wait")
	}
	if _, st := pl.PostFilter(ctx, e.preFilter(t, pod), pod, nil); st.Code() != fwk.Unschedulable {
		t.Errorf("PostFilter after the second wait: %v %q, want Unschedulable", st.Code(), st.Message())
	}

	// Only MesosOffers holds a pod back on the node it is nominated to: the
	// scheduler counts its victims gone, Mesos has not offered their
	// resources yet. It waits, however its informer heard of the deletion.
	nominated := mkPod("2", "64Mi")
	nominated.Status.NominatedNodeName = "n1"
	onlyOffers := framework.NewDefaultNodeToStatus()
	onlyOffers.Set("n1", fwk.NewStatus(fwk.Unschedulable, "mesos: not enough cpus offered (2 requested)").WithPlugin(Name))
	state = e.preFilter(t, nominated)
	pl.waiters.since[nominated.UID] = time.Now().Add(-time.Hour)
	if _, st := pl.PostFilter(ctx, state, nominated, onlyOffers); st.Code() != fwk.UnschedulableAndUnresolvable {
		t.Errorf("PostFilter when only MesosOffers holds the pod back on its nominated node: %v %q, want UnschedulableAndUnresolvable", st.Code(), st.Message())
	}
	stockToo := framework.NewDefaultNodeToStatus()
	stockToo.Set("n2", fwk.NewStatus(fwk.Unschedulable, "Insufficient cpu").WithPlugin("NodeResourcesFit"))
	other := mkPod("2", "64Mi")
	other.Status.NominatedNodeName = "n2"
	state = e.preFilter(t, other)
	pl.waiters.since[other.UID] = time.Now().Add(-time.Hour)
	if _, st := pl.PostFilter(ctx, state, other, stockToo); st.Code() != fwk.Unschedulable {
		t.Errorf("PostFilter when stock filters hold the pod back too: %v %q, want Unschedulable", st.Code(), st.Message())
	}

	never := mkPod("2", "64Mi")
	policy := v1.PreemptNever
	never.Spec.PreemptionPolicy = &policy
	if _, st := pl.PostFilter(ctx, e.preFilter(t, never), never, nil); st.Code() != fwk.Unschedulable {
		t.Errorf("PostFilter of a pod that never preempts: %v %q, want Unschedulable without waiting", st.Code(), st.Message())
	}
	// Nor does a pod no agent could ever hold: evicting pods cannot help.
	huge := mkPod("16", "64Mi")
	state = framework.NewCycleState()
	if _, st := pl.PreFilter(ctx, state, huge, nil); st.Code() != fwk.Unschedulable {
		t.Fatalf("PreFilter of a pod bigger than every agent: %v", st)
	}
	if _, st := pl.PostFilter(ctx, state, huge, nil); st.Code() != fwk.Unschedulable {
		t.Errorf("PostFilter of a pod bigger than every agent: %v %q, want Unschedulable without waiting", st.Code(), st.Message())
	}
}
