package mesosoffers

import (
	"context"
	"fmt"
	"math/rand"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// fittingByScan is what the index must answer: every agent of the view
// fitted one by one, as PreFilter did before the index.
func fittingByScan(m *mirror, d podresources.Demand) sets.Set[string] {
	out := sets.New[string]()
	m.each(func(a *agent) bool {
		if _, short := a.available.Fit(d); short.Fits() {
			out.Insert(a.hostname)
		}
		return true
	})
	return out
}

func protoAgent(host string, version uint64, r podresources.Resources) *brokerv1.Agent {
	rs := brokerapi.ByRoleToProto(podresources.ByRole{"*": r})
	return &brokerv1.Agent{AgentId: "id-" + host, Hostname: host, Available: rs, Capacity: rs, ResourceVersion: version}
}

// The index answers as a scan of the view after every change the offer
// watch and the plugin's claims make: offers updated and rescinded,
// claims made, answered, shown by the broker and dropped, an epoch reset
// and a disconnect. A set handed out does not change until its shape's set
// is handed out again.
func TestFitIndexFollowsTheView(t *testing.T) {
	rnd := rand.New(rand.NewSource(3))
	m := newMirror(nil)
	hosts := make([]string, 12)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d", i)
	}
	version := uint64(0)
	randRes := func() podresources.Resources {
		return res(float64(rnd.Intn(5))/2, float64(rnd.Intn(5)*512), podresources.Range{Begin: 31000, End: 31000 + uint64(rnd.Intn(3))})
	}
	snapshot := func(epoch string) {
		snap := &brokerv1.Snapshot{Epoch: epoch}
		for _, h := range hosts {
			if rnd.Intn(3) > 0 {
				version++
				snap.Agents = append(snap.Agents, protoAgent(h, version, randRes()))
			}
		}
		m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Snapshot{Snapshot: snap}})
	}
	shapes := []podresources.Demand{
		{Scalars: podresources.Scalars{CPUs: 500, MemMB: 512000}},
		{Scalars: podresources.Scalars{CPUs: 1000, MemMB: 64000}},
		{Scalars: podresources.Scalars{CPUs: 250, MemMB: 64000}, HostPorts: []uint64{31001}},
		{Scalars: podresources.Scalars{CPUs: 250, MemMB: 64000}, WildcardPorts: 2},
		{Scalars: podresources.Scalars{CPUs: 250, MemMB: 64000}, Roles: []string{"other"}},
	}
	// More shapes than the index keeps, so that some are evicted and
	// fitted again.
	for i := range maxFitShapes {
		shapes = append(shapes, podresources.Demand{Scalars: podresources.Scalars{CPUs: podresources.Milli(100 + i), MemMB: 1000}})
	}
	type handed struct {
		set, copy sets.Set[string]
	}
	// The sets handed out last, by shape: each must stay as it was until
	// its shape's set is handed out again (the next scheduling cycle).
	given := map[string]handed{}
	check := func(step string) {
		t.Helper()
		for key, h := range given {
			if !h.set.Equal(h.copy) {
				t.Fatalf("after %s: a set handed out earlier for %s changed from %v to %v", step, key, sets.List(h.copy), sets.List(h.set))
			}
		}
		for _, d := range shapes {
			if got, want := m.fitsAny(d), fittingByScan(m, d).Len() > 0; got != want {
				t.Fatalf("after %s: fitsAny(%s) = %v, a scan of the view says %v", step, d, got, want)
			}
		}
		for _, d := range shapes[:5+rnd.Intn(len(shapes)-5)] {
			got, want := m.fitting(d), fittingByScan(m, d)
			if !got.Equal(want) {
				t.Fatalf("after %s: fitting(%s) = %v, a scan of the view says %v", step, d, sets.List(got), sets.List(want))
			}
			given[shapeKey(d)] = handed{got, got.Clone()}
		}
	}

	snapshot("e1")
	check("the first snapshot")
	claims := map[types.UID]*claim{}
	pods := 0
	for step := range 400 {
		h := hosts[rnd.Intn(len(hosts))]
		var what string
		switch op := rnd.Intn(8); op {
		case 0, 1: // new offers on an agent
			version++
			m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: protoAgent(h, version, randRes())}})
			what = "offers updated on " + h
		case 2: // offers rescinded, or taken by an ACCEPT
			m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Removed{Removed: &brokerv1.AgentRemoved{AgentId: "id-" + h, Hostname: h}}})
			what = "offers of " + h + " rescinded"
		case 3, 4: // a local claim
			pods++
			uid := types.UID(fmt.Sprintf("p%d", pods))
			c, _, short, err := m.claim(h, uid, shapes[rnd.Intn(5)])
			if err == nil && short.Fits() {
				claims[uid] = c
			}
			what = "a claim on " + h
		case 5: // the broker answers a claim, and its view shows it
			for uid, c := range claims {
				a := m.get(c.host)
				if a == nil {
					delete(claims, uid)
					continue
				}
				version++
				m.answered(c, version)
				base := m.base[c.host].available.Clone()
				base["*"] = base["*"].Subtract(c.res)
				m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: &brokerv1.Agent{
					AgentId: "id-" + c.host, Hostname: c.host, Available: brokerapi.ByRoleToProto(base), ResourceVersion: version}}})
				delete(claims, uid)
				what = "a claim on " + c.host + " shown by the broker"
				break
			}
		case 6: // Unreserve or a refusal drops a claim
			for uid, c := range claims {
				m.drop(c)
				delete(claims, uid)
				what = "a claim on " + c.host + " dropped"
				break
			}
		case 7:
			if rnd.Intn(10) == 0 {
				epoch := "e1"
				if rnd.Intn(2) == 0 {
					epoch = fmt.Sprintf("e%d", step)
					clear(claims)
				}
				snapshot(epoch)
				what = "a snapshot of epoch " + epoch
			} else if rnd.Intn(10) == 0 {
				m.disconnected(fmt.Errorf("test"))
				clear(claims)
				snapshot(fmt.Sprintf("e%d", step))
				what = "a disconnect and a new broker's snapshot"
			}
		}
		if what != "" {
			check(what)
		}
	}
}

// The nodes where a pod may preempt follow the pods: bound, changed
// priority, finished, deleted, and the plugin's own reservations until
// their binding shows.
func TestPrioritiesFollowThePods(t *testing.T) {
	x := newPriorities()
	pod := func(name, node string, prio int32) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name)},
			Spec: v1.PodSpec{NodeName: node, Priority: ptr.To(prio)}, Status: v1.PodStatus{Phase: v1.PodRunning}}
	}
	want := func(step string, prio int32, skip sets.Set[string], nodes ...string) {
		t.Helper()
		got := sets.New(x.below(prio, skip)...)
		if !got.Equal(sets.New(nodes...)) || len(got) != len(x.below(prio, skip)) {
			t.Errorf("%s: nodes below priority %d = %v, want %v", step, prio, x.below(prio, skip), nodes)
		}
		if n := x.nodesBelow(prio); n < len(nodes) {
			t.Errorf("%s: nodesBelow(%d) = %d, fewer than the %d nodes", step, prio, n, len(nodes))
		}
	}
	x.observe(pod("a", "n1", 0))
	x.observe(pod("b", "n2", 100))
	x.observe(pod("c", "n2", 0))
	x.observe(pod("pending", "", 0))
	want("bound pods", 100, nil, "n1", "n2")
	want("a node once though it runs two lower priorities", 1000, nil, "n1", "n2")
	want("no lower priority", 0, nil)
	want("nodes the pod fits already skipped", 100, sets.New("n2"), "n1")

	done := pod("c", "n2", 0)
	done.Status.Phase = v1.PodSucceeded
	x.observe(done)
	want("a finished pod frees no Mesos resources", 100, nil, "n1")

	x.assume(pod("r", "", 10), "n3")
	want("a reserved pod counts before it is bound", 100, nil, "n1", "n3")
	x.observe(pod("r", "", 10))
	want("an update of the pending pod keeps the reservation", 100, nil, "n1", "n3")
	x.observe(pod("r", "n3", 10))
	x.forgetAssumed("r")
	want("a bound pod stays after its Unreserve", 100, nil, "n1", "n3")
	x.assume(pod("s", "", 10), "n4")
	x.forgetAssumed("s")
	want("Unreserve drops the reservation", 100, nil, "n1", "n3")

	x.observe(pod("a", "n1", 500))
	want("a priority changed", 100, nil, "n3")
	x.podHandler().OnDelete(pod("r", "n3", 10))
	want("a deleted pod", 100, nil)
	x.podHandler().OnAdd(pod("z", "n5", 0), false)
	want("a pod added through the informer handler", 100, nil, "n5")
	x.forget("z")
	if len(x.pods) != 2 || len(x.nodes) != 2 {
		t.Errorf("left %d pods in %d priorities, want the 2 bound ones (a, b)", len(x.pods), len(x.nodes))
	}
}

// The plugin hears of bound pods from the scheduler's pod informer: a node
// running a pod of lower priority stays among the candidates of a pod that
// may preempt.
func TestPreFilterReadsPrioritiesFromTheInformer(t *testing.T) {
	b := startBroker(t, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client := fake.NewClientset()
	factory := informers.NewSharedInformerFactory(client, 0)
	h := &fakeHandle{client: client, informers: factory, activated: make(chan map[string]*v1.Pod, 100)}
	raw := fmt.Sprintf(`{"brokerAddresses":[%q],"reconnectMaxDelay":"100ms"}`, b.addr)
	p, err := New(ctx, &runtime.Unknown{Raw: []byte(raw), ContentType: runtime.ContentTypeJSON}, h)
	if err != nil {
		t.Fatal(err)
	}
	pl := p.(*MesosOffers)
	e := &env{broker: b, handle: h, pl: pl}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	factory.Start(ctx.Done())
	e.offer(t, mkOffer("a-free", "free", res(4, 4096)))

	low := bound(mkPod("2", "1Gi"), "busy")
	if _, err := client.CoreV1().Pods("default").Create(ctx, low, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := mkPod("2", "1Gi")
	pod.Spec.Priority = ptr.To[int32](100)
	nodes := []string{"busy", "free", "n3", "n4", "n5"} // preempting on every node is not narrowed
	infos := make([]fwk.NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		infos = append(infos, nodeInfo(n, agentTaint))
	}
	e.waitFor(t, "the bound pod's node among the candidates", func() bool {
		return preFilterNodes(t, e, pod, infos...).Equal(sets.New("free", "busy"))
	})
	if err := client.CoreV1().Pods("default").Delete(ctx, low.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitFor(t, "the deleted pod's node out of the candidates", func() bool {
		return preFilterNodes(t, e, pod, infos...).Equal(sets.New("free"))
	})
}

// A dry run changes the room of the agents it touches for that state only:
// Filter fits the changed room, while the index, the view and the other
// states keep the agent's offers.
func TestDryRunLeavesTheIndexAlone(t *testing.T) {
	e := newEnv(t)
	e.fullAgent(t, "a1", "n1", res(2, 4096), res(0.5, 3072))
	e.offer(t, mkOffer("a2", "n2", res(2, 4096)))
	preemptor := mkPod("1500m", "512Mi")
	preemptor.Spec.Priority = ptr.To[int32](100)
	victim := bound(mkPod("1", "512Mi"), "n1")
	e.pl.priorities.observe(victim)

	state := framework.NewCycleState()
	res, st := e.pl.PreFilter(context.Background(), state, preemptor, []fwk.NodeInfo{nodeInfo("n1"), nodeInfo("n2"), nodeInfo("n3")})
	if !st.IsSuccess() || !res.NodeNames.Equal(sets.New("n1", "n2")) {
		t.Fatalf("PreFilter: %v %v, want n2 (room) and n1 (a victim)", res, st)
	}
	dry := state.Clone()
	e.removePod(t, dry, preemptor, victim, "n1")
	if st := e.filter(dry, preemptor, "n1"); !st.IsSuccess() {
		t.Fatalf("n1 with the victim removed: %v, want fit", st)
	}
	e.addPod(t, dry, preemptor, victim, "n1")
	wantReasons(t, e.filter(dry, preemptor, "n1"), fwk.Unschedulable, "mesos: not enough cpus offered (1.5 requested)")
	e.removePod(t, dry, preemptor, victim, "n1")
	if got := e.pl.mirror.fitting(mustDemand(t, preemptor)); !got.Equal(sets.New("n2")) {
		t.Errorf("index after the dry run: %v, want [n2]: a dry run must not change the view", sets.List(got))
	}
	wantReasons(t, e.filter(state, preemptor, "n1"), fwk.Unschedulable, "mesos: not enough cpus offered (1.5 requested)")
	if st := e.filter(dry, preemptor, "n2"); !st.IsSuccess() {
		t.Errorf("n2 in the dry run's state: %v, want fit", st)
	}
}

func mustDemand(t testing.TB, p *v1.Pod) podresources.Demand {
	t.Helper()
	d, err := podresources.FromPod(p)
	if err != nil {
		t.Fatal(err)
	}
	return d.WithDefaults(podresources.DefaultPodScalars)
}

// A shape's set handed out to PreFilter stays as it was while offers come
// and go (the scheduler may still read it in that cycle); the next
// PreFilter's answer, named or too wide to name, is the view's at that
// time, and a named set after a wide answer holds every change since.
func TestFitIndexHandsOutTheViewOfEachCycle(t *testing.T) {
	m := newMirror(nil)
	big := res(4, 4096, podresources.Range{Begin: 31000, End: 31010})
	hosts := make([]string, 9)
	snap := &brokerv1.Snapshot{Epoch: "e1"}
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%d", i)
		if i < 3 {
			snap.Agents = append(snap.Agents, protoAgent(hosts[i], 1, big))
		}
	}
	m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Snapshot{Snapshot: snap}})
	d := podresources.Demand{Scalars: podresources.Scalars{CPUs: 1000, MemMB: 512000}}
	offer := func(h string, v uint64) {
		m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: protoAgent(h, v, big)}})
	}
	rescind := func(h string) {
		m.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Removed{Removed: &brokerv1.AgentRemoved{AgentId: "id-" + h, Hostname: h}}})
	}

	first := m.preFilterView(d, true, 5)
	if !first.fitting.Equal(sets.New("h0", "h1", "h2")) {
		t.Fatalf("first cycle: fitting %v, want h0 h1 h2", sets.List(first.fitting))
	}
	for i, h := range hosts[3:] {
		offer(h, uint64(2+i))
	}
	rescind("h1")
	offer("h1", 20) // back on the side handed out
	rescind("h0")
	if !first.fitting.Equal(sets.New("h0", "h1", "h2")) {
		t.Fatalf("the set handed out changed within its cycle: %v", sets.List(first.fitting))
	}
	if !m.fitsAny(d) {
		t.Fatal("fitsAny: no agent holds the pod, want 8")
	}

	wide := m.preFilterView(d, true, 5) // h1..h8 hold it: too many to name
	if !wide.wide || wide.fitting != nil {
		t.Fatalf("second cycle: wide %v fitting %v, want wide with no set", wide.wide, sets.List(wide.fitting))
	}
	for _, h := range hosts[1:7] {
		rescind(h)
	}
	third := m.preFilterView(d, true, 5)
	if want := fittingByScan(m, d); third.wide || !third.fitting.Equal(want) || !want.Equal(sets.New("h7", "h8")) {
		t.Fatalf("third cycle: wide %v fitting %v, want %v (h7 h8)", third.wide, sets.List(third.fitting), sets.List(want))
	}
}
