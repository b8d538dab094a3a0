package mesosoffers

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/rolepolicy"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// BenchmarkPreFilterFilter is MesosOffers' share of the serial scheduling
// cycle in a burst, as the scheduler drives it: PreFilter over every Node,
// Filter over the nodes it names (or all) until the scheduler's adaptive
// percentageOfNodesToScore has its feasible nodes, a claim on the first
// one, the broker's view showing that claim, and the offer churn of a
// burst (the agent's offers go out in the ACCEPT, the longest-waiting one
// is offered again). It reports wall time and this thread's CPU time per
// phase: on a shared machine the wall time measures the others' load as
// much as the plugin. Half of the agents have offers at any time and every
// Node runs two bench pods (10m CPU, 16Mi, priority 0). The pods are the
// bench's, and a priority-1000 pod that may preempt anywhere.
//
//	go test -run '^$' -bench PreFilterFilter -benchtime 2000x ./plugin/mesosoffers
func BenchmarkPreFilterFilter(b *testing.B) {
	for _, agents := range []int{1000, 5000} {
		for _, kind := range []string{"bench-pod", "high-priority"} {
			b.Run(fmt.Sprintf("agents=%d/pod=%s", agents, kind), func(b *testing.B) {
				benchPreFilterFilter(b, agents, kind == "high-priority")
			})
		}
	}
}

type benchCluster struct {
	pl      *MesosOffers
	nodes   []fwk.NodeInfo
	byName  map[string]fwk.NodeInfo
	view    map[string]*brokerv1.Agent // the broker's view of each agent
	offered map[string]bool
	out     []string // agents whose offers are out, oldest first
}

func benchAgentProto(host string, version uint64) *brokerv1.Agent {
	r := podresources.Resources{
		Scalars: podresources.Scalars{CPUs: 8000, MemMB: 32768 * 1000, DiskMB: 100000 * 1000},
		Ports:   podresources.NewRanges(podresources.Range{Begin: 31000, End: 32000}),
	}
	rs := brokerapi.ByRoleToProto(podresources.ByRole{"*": r})
	return &brokerv1.Agent{AgentId: "id-" + host, Hostname: host, Available: rs, Capacity: rs, ResourceVersion: version,
		Attributes: map[string]string{"rack": "r1"}}
}

func benchPod(i int, prio int32) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: "default", UID: types.UID(fmt.Sprintf("bench-%d", i))},
		Spec: v1.PodSpec{
			SchedulerName: "mesos-scheduler",
			Priority:      ptr.To(prio),
			Tolerations:   []v1.Toleration{{Key: agentTaint.Key, Operator: v1.TolerationOpExists}},
			Containers: []v1.Container{{Name: "c", Image: "pause", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
				v1.ResourceCPU: resource.MustParse("10m"), v1.ResourceMemory: resource.MustParse("16Mi")}}}},
		},
	}
}

func newBenchCluster(b *testing.B, agents int) *benchCluster {
	return newBenchClusterOffered(b, agents, 50)
}

// newBenchClusterOffered is newBenchCluster with offeredPct of every 100
// agents offered at the start (and in the churn) instead of half.
func newBenchClusterOffered(b *testing.B, agents, offeredPct int) *benchCluster {
	args, err := argsFrom(nil)
	if err != nil {
		b.Fatal(err)
	}
	pl := &MesosOffers{
		handle:  &fakeHandle{activated: make(chan map[string]*v1.Pod, 1<<16)},
		args:    args,
		mirror:  newMirror(nil),
		waiters: newWaiters(),
		policy:  rolepolicy.Static(rolepolicy.Default()),
	}
	pl.parked = newParked(func(map[string]*v1.Pod) {})
	c := &benchCluster{pl: pl, byName: map[string]fwk.NodeInfo{}, view: map[string]*brokerv1.Agent{}, offered: map[string]bool{}}
	snap := &brokerv1.Snapshot{Epoch: "e1"}
	var bound []*v1.Pod
	for i := range agents {
		host := fmt.Sprintf("agent-%05d", i)
		var pods []*v1.Pod
		for j := range 2 {
			p := benchPod(agents*10+2*i+j, 0)
			p.Spec.NodeName = host
			p.Status.Phase = v1.PodRunning
			pods = append(pods, p)
		}
		bound = append(bound, pods...)
		ni := framework.NewNodeInfo(pods...)
		ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: host}, Spec: v1.NodeSpec{Taints: []v1.Taint{agentTaint}}})
		c.nodes = append(c.nodes, ni)
		c.byName[host] = ni
		c.view[host] = benchAgentProto(host, 1)
		if i%100 < offeredPct {
			snap.Agents = append(snap.Agents, c.view[host])
			c.offered[host] = true
		} else {
			c.out = append(c.out, host)
		}
	}
	pl.mirror.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Snapshot{Snapshot: snap}})
	benchFeedPods(pl, bound)
	return c
}

// numFeasibleNodesToFind is the scheduler's, with percentageOfNodesToScore
// unset (adaptive).
func numFeasibleNodesToFind(n int) int {
	if n < 100 {
		return n
	}
	pct := max(50-n/125, 5)
	return max(n*pct/100, 100)
}

// threadCPU is the CPU time of the calling thread (the benchmark locks its
// goroutine to it).
func threadCPU(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

// phaseTimes are the wall and thread CPU times of PreFilter and Filter.
type phaseTimes struct {
	preWall, preCPU, filterWall, filterCPU time.Duration
}

// attempt schedules one pod; it returns the node chosen ("" if none), the
// time PreFilter and Filter took and the nodes Filter visited.
func (c *benchCluster) attempt(b *testing.B, pod *v1.Pod, start int) (string, phaseTimes, int) {
	ctx := context.Background()
	state := framework.NewCycleState()
	c0, t0 := threadCPU(b), time.Now()
	res, st := c.pl.PreFilter(ctx, state, pod, c.nodes)
	t1, c1 := time.Now(), threadCPU(b)
	if !st.IsSuccess() {
		b.Fatalf("PreFilter: %v", st)
	}
	nodes := c.nodes
	if !res.AllNodes() {
		nodes = make([]fwk.NodeInfo, 0, len(res.NodeNames))
		for n := range res.NodeNames {
			if ni := c.byName[n]; ni != nil {
				nodes = append(nodes, ni)
			}
		}
	}
	want := numFeasibleNodesToFind(len(nodes))
	var chosen string
	found, visited := 0, 0
	c2, t2 := threadCPU(b), time.Now()
	for i := range nodes {
		ni := nodes[(start+i)%len(nodes)]
		visited++
		if c.pl.Filter(ctx, state, pod, ni) == nil {
			if chosen == "" {
				chosen = ni.Node().Name
			}
			if found++; found == want {
				break
			}
		}
	}
	t3, c3 := time.Now(), threadCPU(b)
	if chosen != "" {
		ds, _ := demandStateFrom(state)
		cl, _, short, err := c.pl.mirror.claim(chosen, pod.UID, ds.demand)
		if err != nil || !short.Fits() {
			b.Fatalf("claim on %s: %v %v", chosen, err, short)
		}
		c.pl.parked.unpark(pod.UID)
		c.pl.waiters.done(pod.UID)
		c.brokerGrants(cl)
	}
	return chosen, phaseTimes{preWall: t1.Sub(t0), preCPU: c1 - c0, filterWall: t3.Sub(t2), filterCPU: c3 - c2}, visited
}

// brokerGrants plays the broker: the reservation shows in its view, then
// the launch takes the agent's offers out and the agent out longest is
// offered again.
func (c *benchCluster) brokerGrants(cl *claim) {
	for _, ev := range c.grantEvents(cl) {
		if ev != nil {
			c.pl.mirror.apply(ev)
		}
	}
}

// grantEvents notes the broker's answer to cl in the mirror and returns
// the watch events that follow it: the agent's view with the reservation,
// its offers going in the launch, and the agent out longest offered again.
func (c *benchCluster) grantEvents(cl *claim) []*brokerv1.WatchOffersResponse {
	old := c.view[cl.host]
	avail := brokerapi.ByRoleFromProto(old.GetAvailable())
	avail[cl.role] = avail[cl.role].Subtract(cl.res)
	next := &brokerv1.Agent{AgentId: old.AgentId, Hostname: old.Hostname, Available: brokerapi.ByRoleToProto(avail),
		Capacity: old.Capacity, ResourceVersion: old.ResourceVersion + 1, Attributes: old.Attributes}
	c.view[cl.host] = next
	c.pl.mirror.answered(cl, next.ResourceVersion)
	evs := []*brokerv1.WatchOffersResponse{
		{Event: &brokerv1.WatchOffersResponse_Updated{Updated: next}},
		{Event: &brokerv1.WatchOffersResponse_Removed{Removed: &brokerv1.AgentRemoved{AgentId: next.AgentId, Hostname: next.Hostname}}},
	}
	c.offered[cl.host] = false
	c.out = append(c.out, cl.host)
	back := c.out[0]
	c.out = c.out[1:]
	a := c.view[back]
	a.ResourceVersion++
	c.offered[back] = true
	return append(evs, &brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: a}})
}

func benchPreFilterFilter(b *testing.B, agents int, highPriority bool) {
	c := newBenchCluster(b, agents)
	prio := int32(0)
	if highPriority {
		prio = 1000
	}
	var sum phaseTimes
	visited := 0
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		pod := benchPod(i, prio)
		chosen, t, v := c.attempt(b, pod, i*7919)
		if chosen == "" {
			b.Fatalf("pod %d found no node", i)
		}
		sum.preWall += t.preWall
		sum.preCPU += t.preCPU
		sum.filterWall += t.filterWall
		sum.filterCPU += t.filterCPU
		visited += v
	}
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(per(sum.preWall), "prefilter-µs/op")
	b.ReportMetric(per(sum.preCPU), "prefilter-cpu-µs/op")
	b.ReportMetric(per(sum.filterWall), "filter-µs/op")
	b.ReportMetric(per(sum.filterCPU), "filter-cpu-µs/op")
	b.ReportMetric(float64(visited)/float64(b.N), "filtered-nodes/op")
}
