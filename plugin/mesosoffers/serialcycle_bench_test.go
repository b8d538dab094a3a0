package mesosoffers

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	schedmetrics "k8s.io/kubernetes/pkg/scheduler/metrics"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// BenchmarkSerialCycle runs the stock kube-scheduler's own cycle
// (scheduler.New with a fake clientset, ScheduleOne: snapshot, PreFilter,
// the PreFilterResult handling, the parallel Filter, PreScore, Score,
// Reserve) over the same Nodes for the stock profile and the
// mesos-scheduler one (manifests/scheduler.yaml: percentageOfNodesToScore
// 10, MesosOffers' PreFilter and Filter in place of TaintToleration's).
// Binding is a no-op and, for MesosOffers, Reserve plays the claim and
// the broker's view as BenchmarkPreFilterFilter does: no Mesos, no API
// server; the Reserve figure is mostly that play (in k8sm the watch
// events apply on the watch's goroutine, not in Reserve). It reports the scheduler's extension-point means (the metric the
// real bench reads), the nodes Filter visited and the nodes scored per
// attempt, and the process's CPU per pod. The question it answers is #16's:
// why PreFilter, Filter and Score cost more per attempt in the
// mesos-scheduler profile at 5,000 agents. watch=async applies the
// broker's answers and the offer churn on a goroutine of their own, as the
// offer watch does in k8sm (benchCount).
//
//	go test -run '^$' -bench SerialCycle -benchtime 1000x ./plugin/mesosoffers
func BenchmarkSerialCycle(b *testing.B) {
	schedmetrics.Register()
	for _, agents := range []int{1000, 5000} {
		for _, prof := range []string{"default-scheduler", "mesos-scheduler"} {
			for _, offered := range []int{50, 90, 100} {
				for _, watch := range []string{"sync", "async"} {
					if prof == "default-scheduler" && (offered != 100 || watch != "sync") {
						continue // offers do not matter to the stock profile
					}
					b.Run(fmt.Sprintf("agents=%d/profile=%s/offered=%d%%/watch=%s", agents, prof, offered, watch), func(b *testing.B) {
						benchSerialCycle(b, agents, prof, offered, watch == "async")
					})
				}
			}
		}
	}
}

const serialCycleConfig = `
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: default-scheduler
  plugins:
    filter: {enabled: [{name: BenchCount}]}
    preScore: {enabled: [{name: BenchCount}]}
    bind: {enabled: [{name: BenchCount}], disabled: [{name: DefaultBinder}]}
- schedulerName: mesos-scheduler
  percentageOfNodesToScore: 10
  plugins:
    preFilter: {enabled: [{name: MesosOffers}]}
    filter: {enabled: [{name: MesosOffers}, {name: BenchCount}], disabled: [{name: TaintToleration}]}
    preScore: {enabled: [{name: BenchCount}]}
    reserve: {enabled: [{name: BenchCount}]}
    bind: {enabled: [{name: BenchCount}], disabled: [{name: DefaultBinder}]}
`

// benchCount counts, per attempt, the nodes that reached the end of
// Filter (every filter passed) and the nodes handed to PreScore (the ones
// Score scores); for the mesos-scheduler profile its Reserve is the claim
// and the broker's answer, and its Bind succeeds at once in both. With
// granted set (watch=async) Reserve only claims, as MesosOffers' Reserve
// does, and the broker's answer and the offer churn reach the mirror on
// another goroutine, as the offer watch's events do in k8sm: the view and
// the fit index change between and during attempts.
type benchCount struct {
	c                  *benchCluster // nil in the stock profile
	filtered, prescore atomic.Int64
	mesosFiltered      atomic.Int64 // MesosOffers' Filter calls (every visited node)
	granted            chan *claim
}

func (*benchCount) Name() string { return "BenchCount" }

func (bc *benchCount) Filter(context.Context, fwk.CycleState, *v1.Pod, fwk.NodeInfo) *fwk.Status {
	bc.filtered.Add(1)
	return nil
}

func (bc *benchCount) PreScore(_ context.Context, _ fwk.CycleState, _ *v1.Pod, nodes []fwk.NodeInfo) *fwk.Status {
	bc.prescore.Add(int64(len(nodes)))
	return nil
}

func (bc *benchCount) Reserve(ctx context.Context, state fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	ds, err := demandStateFrom(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	cl, _, short, err := bc.c.pl.mirror.claim(node, pod.UID, ds.demand)
	if err != nil || !short.Fits() {
		return fwk.AsStatus(fmt.Errorf("claim on %s: %v %v", node, err, short))
	}
	bc.c.pl.parked.unpark(pod.UID)
	bc.c.pl.waiters.done(pod.UID)
	if bc.granted != nil {
		bc.granted <- cl
		return nil
	}
	bc.c.brokerGrants(cl)
	return nil
}

// watchGrants plays the broker and the offer watch for the claims Reserve
// sends: brokerGrants' events, applied and handed to the parked pods as
// mirror.watchOnce does, until claims is closed.
func (c *benchCluster) watchGrants(ctx context.Context, claims <-chan *claim) {
	for cl := range claims {
		for _, ev := range c.grantEvents(cl) {
			if ev == nil {
				continue
			}
			if agents := c.pl.mirror.apply(ev); len(agents) > 0 {
				c.pl.parked.offersChanged(ctx, agents)
			}
		}
	}
}

func (*benchCount) Unreserve(context.Context, fwk.CycleState, *v1.Pod, string) {}

func (*benchCount) Bind(context.Context, fwk.CycleState, *v1.Pod, string) *fwk.Status { return nil }

// countingOffers is MesosOffers with its Filter calls counted.
type countingOffers struct {
	*MesosOffers
	bc *benchCount
}

func (co *countingOffers) Filter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, ni fwk.NodeInfo) *fwk.Status {
	co.bc.mesosFiltered.Add(1)
	return co.MesosOffers.Filter(ctx, state, pod, ni)
}

func extensionPoint(b *testing.B, point, profile string) (float64, uint64) {
	vec, err := testutil.GetHistogramVecFromGatherer(legacyregistry.DefaultGatherer,
		"scheduler_framework_extension_point_duration_seconds", map[string]string{"extension_point": point, "profile": profile})
	if err != nil {
		return 0, 0
	}
	return vec.GetAggregatedSampleSum(), vec.GetAggregatedSampleCount()
}

func benchSerialCycle(b *testing.B, agents int, profile string, offeredPct int, async bool) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := klog.FromContext(ctx)
	c := newBenchClusterOffered(b, agents, offeredPct)
	// Every agent was in the view once, as after the 5,000 hollow agents'
	// first offers: the mirror's first sight of a host adds its slot
	// (publishLocked), a cost of the start, not of the burst.
	for _, host := range c.out {
		a := c.view[host]
		c.pl.mirror.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Updated{Updated: a}})
		c.pl.mirror.apply(&brokerv1.WatchOffersResponse{Event: &brokerv1.WatchOffersResponse_Removed{Removed: &brokerv1.AgentRemoved{AgentId: a.AgentId, Hostname: a.Hostname}}})
	}

	obj, _, err := scheme.Codecs.UniversalDecoder().Decode([]byte(serialCycleConfig), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := obj.(*schedconfig.KubeSchedulerConfiguration)
	counts := map[string]*benchCount{}
	registry := frameworkruntime.Registry{
		"MesosOffers": func(_ context.Context, _ runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
			c.pl.handle = h
			return &countingOffers{MesosOffers: c.pl, bc: counts["mesos-scheduler"]}, nil
		},
	}
	// MesosOffers' wrapper counts into the profile's BenchCount, whichever
	// the framework builds first.
	counts["mesos-scheduler"] = &benchCount{c: c}
	registry["BenchCount"] = func(_ context.Context, _ runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
		name := h.(interface{ ProfileName() string }).ProfileName()
		if bc := counts[name]; bc != nil {
			return bc, nil
		}
		bc := &benchCount{}
		counts[name] = bc
		return bc, nil
	}

	client := fake.NewClientset()
	inf := informers.NewSharedInformerFactory(client, 0)
	sched, err := scheduler.New(ctx, client, inf, nil,
		func(string) events.EventRecorderLogger { return &events.FakeRecorder{} },
		scheduler.WithProfiles(cfg.Profiles...),
		scheduler.WithPercentageOfNodesToScore(cfg.PercentageOfNodesToScore),
		scheduler.WithParallelism(cfg.Parallelism),
		scheduler.WithFrameworkOutOfTreeRegistry(registry))
	if err != nil {
		b.Fatal(err)
	}
	for _, ni := range c.nodes {
		n := ni.Node().DeepCopy()
		n.Status.Allocatable = v1.ResourceList{
			v1.ResourceCPU:    resource.MustParse("8"),
			v1.ResourceMemory: resource.MustParse("32Gi"),
			v1.ResourcePods:   resource.MustParse("110"),
		}
		n.Status.Capacity = n.Status.Allocatable
		sched.Cache.AddNode(logger, n)
		for _, p := range ni.GetPods() {
			if err := sched.Cache.AddPod(logger, p.GetPod()); err != nil {
				b.Fatal(err)
			}
		}
	}
	bc := counts[profile]
	if async && bc.c != nil {
		bc.granted = make(chan *claim, 1<<16)
		done := make(chan struct{})
		go func() {
			defer close(done)
			c.watchGrants(ctx, bc.granted)
		}()
		defer func() {
			close(bc.granted)
			<-done
		}()
	}

	sum0 := map[string]float64{}
	n0 := map[string]uint64{}
	points := []string{"PreFilter", "Filter", "PreScore", "Score", "Reserve"}
	for _, p := range points {
		sum0[p], n0[p] = extensionPoint(b, p, profile)
	}
	cpu0 := processCPU(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		pod := benchPod(agents*100+i, 0)
		pod.Spec.SchedulerName = profile
		sched.SchedulingQueue.Add(ctx, pod)
		sched.ScheduleOne(ctx)
	}
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/pod")
	for _, p := range points {
		s, n := extensionPoint(b, p, profile)
		if n > n0[p] {
			b.ReportMetric((s-sum0[p])*1e6/float64(n-n0[p]), p+"-µs/attempt")
		}
	}
	visited := bc.filtered.Load()
	if profile == "mesos-scheduler" {
		visited = bc.mesosFiltered.Load()
	}
	b.ReportMetric(float64(visited)/float64(b.N), "filtered-nodes/op")
	b.ReportMetric(float64(bc.prescore.Load())/float64(b.N), "scored-nodes/op")
}
