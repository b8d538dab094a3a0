package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/cluster"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/manifests"
)

// Scheduler names of the two profiles of the one kube-scheduler process.
const (
	K8smScheduler  = "mesos-scheduler"
	StockScheduler = "stock-scheduler"
)

// ScenarioResult is what one scenario measured.
type ScenarioResult struct {
	Scenario
	// NodesReadySeconds: from the broker's start until every agent is a
	// Ready, untainted Node.
	NodesReadySeconds float64 `json:"nodes_ready_seconds"`
	// UsableNodes* count the agents' Nodes that were Ready and free of
	// node.kubernetes.io taints before the first phase and after the last.
	UsableNodesAtStart int           `json:"usable_nodes_at_start"`
	UsableNodesAtEnd   int           `json:"usable_nodes_at_end"`
	Notes              []string      `json:"notes,omitempty"`
	Phases             []PhaseResult `json:"phases"`
	Broker             *BrokerResult `json:"broker_alone,omitempty"`
	// BeforePhasesCPU is what the broker and the scheduler had spent when
	// the first phase started: the agents mirrored as Nodes, the broker
	// alone, the scheduler's start.
	BeforePhasesCPU *PhaseCPU              `json:"before_phases_cpu,omitempty"`
	BrokerProc      ProcStats              `json:"broker_process"`
	SchedulerProc   ProcStats              `json:"scheduler_process"`
	DriverProc      ProcStats              `json:"driver_process"`
	OffersReceived  float64                `json:"broker_offers_received"`
	OffersDeclined  float64                `json:"broker_offers_declined"`
	OtherFrameworks []OtherFrameworkResult `json:"other_frameworks,omitempty"`
	// Evidence shows the scheduler knobs of a "scheduler" scenario took
	// effect.
	Evidence    *KnobEvidence `json:"knob_evidence,omitempty"`
	Profiles    []string      `json:"profiles,omitempty"`
	WallSeconds float64       `json:"wall_seconds"`
	Error       string        `json:"error,omitempty"`
}

type runner struct {
	cfg        Config
	kube       kubernetes.Interface
	kubeconfig string
}

// scenarioEnv is what runs during one scenario.
type scenarioEnv struct {
	sc        Scenario
	dir       string
	sim       *mesossim.Sim
	broker    *child
	brokerRPC string
	brokerWeb string
	sched     *child
	schedWeb  string
	others    []*otherFramework
}

func (r *runner) runScenario(ctx context.Context, sc Scenario) (res ScenarioResult) {
	res.Scenario = sc
	e := &scenarioEnv{sc: sc, dir: filepath.Join(r.cfg.OutDir, "runs", sc.Name)}
	defer func() {
		if p := recover(); p != nil {
			res.Error = fmt.Sprint("panic: ", p)
		}
		r.teardown(e)
	}()
	if err := r.setup(ctx, e, &res); err != nil {
		res.Error = err.Error()
		return res
	}
	if sc.BrokerRoundTrips > 0 {
		br, err := r.brokerAlone(ctx, e)
		res.Broker = br
		if err != nil {
			res.Error = fmt.Sprintf("broker alone: %v", err)
			return res
		}
	}
	for i := 1; i < sc.Frameworks; i++ {
		o, err := startOtherFramework(ctx, e.sim.MasterURL(), fmt.Sprintf("bench-other-%d", i))
		if err != nil {
			res.Error = err.Error()
			return res
		}
		e.others = append(e.others, o)
	}
	if err := r.startScheduler(ctx, e); err != nil {
		res.Error = err.Error()
		return res
	}
	type phase struct {
		scheduler, mode string
		pods            int
		profile         bool
	}
	phases := []phase{{K8smScheduler, "burst", sc.Pods, sc.Profile}}
	if sc.Stock {
		phases = append(phases, phase{StockScheduler, "burst", sc.Pods, false})
	}
	if sc.PacedPods > 0 {
		phases = append(phases, phase{K8smScheduler, "paced", sc.PacedPods, false})
		if sc.Stock {
			phases = append(phases, phase{StockScheduler, "paced", sc.PacedPods, false})
		}
	}
	res.BeforePhasesCPU = e.cpuNow()
	for _, p := range phases {
		var stopProfiles func() []string
		if p.profile {
			stopProfiles = r.profile(ctx, e)
		}
		cpuStart := e.cpuNow()
		before := scheduleAttempts(ctx, e.schedWeb, p.scheduler)
		epBefore := extensionPointTotals(ctx, e.schedWeb, p.scheduler)
		eventsBefore, writesBefore := schedulerCounters(ctx, e.schedWeb), apiWrites(ctx, r.kube)
		var stopOffers func() *PhaseOffers
		var bindBefore map[string]map[string]histo
		if p.scheduler == K8smScheduler {
			stopOffers = watchOffers(ctx, e.brokerWeb+"/metrics")
			bindBefore = phaseHistograms(ctx, e.schedWeb, e.brokerWeb)
		}
		pr := r.runPhase(ctx, e, p.scheduler, p.mode, p.pods)
		cpuEnd := e.cpuNow()
		pr.CPU = cpuSince(cpuStart, cpuEnd)
		pr.Events = phaseEvents(eventsBefore, schedulerCounters(ctx, e.schedWeb), writesBefore, apiWrites(ctx, r.kube))
		if stopOffers != nil {
			pr.Offers = stopOffers()
			pr.BindPhases = phaseTimings(bindBefore, phaseHistograms(ctx, e.schedWeb, e.brokerWeb))
		}
		pr.ExtensionPointMeanMs = extensionPointMeans(epBefore, extensionPointTotals(ctx, e.schedWeb, p.scheduler))
		if after := scheduleAttempts(ctx, e.schedWeb, p.scheduler); after != nil {
			// before is nil when the profile had no attempt yet: the
			// scheduler creates a series on its first use.
			pr.Attempts = map[string]float64{}
			for k, v := range after {
				pr.Attempts[k] = v - before[k]
			}
		}
		if stopProfiles != nil {
			res.Profiles = stopProfiles()
		}
		res.Phases = append(res.Phases, pr)
		err := r.deletePods(ctx, e, "run="+pr.Label)
		res.Phases[len(res.Phases)-1].DeleteCPU = cpuSince(cpuEnd, e.cpuNow())
		if err != nil {
			res.Error = err.Error()
			break
		}
	}
	if v, ok := metricValue(ctx, e.brokerWeb+"/metrics", "k8sm_broker_offers_received_total", nil); ok {
		res.OffersReceived = v
	}
	if v, ok := metricValue(ctx, e.brokerWeb+"/metrics", "k8sm_broker_offers_declined_total", nil); ok {
		res.OffersDeclined = v
	}
	for _, o := range e.others {
		res.OtherFrameworks = append(res.OtherFrameworks, o.result())
	}
	if u, _, err := r.usableNodes(ctx, e); err == nil {
		res.UsableNodesAtEnd = u
	}
	if sc.Kind == "scheduler" {
		res.Evidence = knobEvidence(ctx, filepath.Join(e.dir, "scheduler.log"), e.schedWeb)
	}
	// Kept for where the time went (extension point and plugin durations).
	for name, url := range map[string]string{"scheduler-metrics.txt": e.schedWeb + "/metrics", "broker-metrics.txt": e.brokerWeb + "/metrics"} {
		if err := fetch(ctx, url, filepath.Join(e.dir, name)); err != nil {
			klog.ErrorS(err, "Saving metrics", "scenario", e.sc.Name)
		}
	}
	res.BrokerProc, _ = procStats(e.broker.pid())
	res.SchedulerProc, _ = procStats(e.sched.pid())
	res.DriverProc, _ = procStats(os.Getpid())
	return res
}

func (r *runner) setup(ctx context.Context, e *scenarioEnv, res *ScenarioResult) error {
	sc := e.sc
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	resources, err := mesossim.ParseResources("cpus:8;mem:32768;disk:100000;ports:[31000-32000]")
	if err != nil {
		return err
	}
	attrs, err := mesossim.ParseAttributes("rack:r1")
	if err != nil {
		return err
	}
	agents := make([]agent.Config, sc.Agents)
	for i := range agents {
		agents[i] = agent.Config{Hostname: agentName(sc, i), Resources: resources, Attributes: attrs, Hollow: true, HollowNoCheckpoint: !r.cfg.HollowCheckpoint}
	}
	work, err := os.MkdirTemp("", "k8sm-bench-sim-")
	if err != nil {
		return err
	}
	t0 := time.Now()
	e.sim, err = mesossim.Start(ctx, mesossim.Config{
		WorkDir: work,
		Master:  master.Config{AllocationInterval: time.Duration(sc.AllocationInterval)},
		Agents:  agents,
	})
	if err != nil {
		os.RemoveAll(work)
		return fmt.Errorf("starting mesos-sim with %d hollow agents: %w", sc.Agents, err)
	}
	klog.InfoS("mesos-sim up", "agents", sc.Agents, "took", time.Since(t0).Round(time.Millisecond), "master", e.sim.MasterURL())

	ports := make([]int, 2)
	for i := range ports {
		if ports[i], err = cluster.FreePort(); err != nil {
			return err
		}
	}
	e.brokerRPC = "127.0.0.1:" + strconv.Itoa(ports[0])
	e.brokerWeb = "http://127.0.0.1:" + strconv.Itoa(ports[1])
	args := []string{"broker",
		"--kube-api-qps=" + fmt.Sprint(r.cfg.BrokerQPS), "--kube-api-burst=" + fmt.Sprint(int(2*r.cfg.BrokerQPS)),
		"--master=" + e.sim.MasterURL(), "--leader-elect=false", "--kubeconfig=" + r.kubeconfig,
		"--grpc-bind-address=" + e.brokerRPC, "--http-bind-address=127.0.0.1:" + strconv.Itoa(ports[1]),
		"--enable-pprof", "--refuse-seconds=" + strconv.FormatFloat(sc.RefuseSeconds, 'g', -1, 64),
		"--launch-batch-window=" + time.Duration(sc.BatchWindow).String(), "--v=1"}
	if r.cfg.BrokerMemoryLimit != "" {
		args = append(args, "--memory-limit="+r.cfg.BrokerMemoryLimit)
	}
	t1 := time.Now()
	if e.broker, err = startChild("broker", filepath.Join(e.dir, "broker.log"), r.cfg.Self, args...); err != nil {
		return err
	}
	if err := poll(ctx, 60*time.Second, func() (bool, error) {
		if done, err := e.broker.exited(); done {
			return false, fmt.Errorf("the broker exited (%v): see %s", err, filepath.Join(e.dir, "broker.log"))
		}
		return httpOK(ctx, e.brokerWeb+"/readyz"), nil
	}); err != nil {
		return fmt.Errorf("waiting for the broker to subscribe: %w", err)
	}
	// A pod that never fits keeps the broker asking for offers until every
	// agent has been offered and mirrored; then it goes, and the broker
	// suppresses offers, as it does on an idle cluster.
	keep := benchPod(K8smScheduler, "keepalive", "bench-keepalive")
	keep.Spec.NodeSelector = map[string]string{"k8sm.io/no-such-label": "x"}
	if _, err := r.kube.CoreV1().Pods("default").Create(ctx, keep, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the keep-alive pod: %w", err)
	}
	usable, err := r.waitNodes(ctx, e, sc.Agents)
	res.UsableNodesAtStart = usable
	if err != nil {
		// A broker that cannot keep every Node Ready is a result, not the
		// end of the run: go on with the Nodes that are usable, as the
		// schedulers do, and say so.
		if usable == 0 {
			return err
		}
		res.Notes = append(res.Notes, fmt.Sprintf("only %d of %d agents' Nodes were Ready and untainted after %v; the phases ran on those", usable, sc.Agents, r.cfg.NodesTimeout))
		klog.ErrorS(err, "Going on with the usable Nodes", "usable", usable, "agents", sc.Agents)
	} else {
		res.NodesReadySeconds = secs(time.Since(t1))
	}
	klog.InfoS("Agents mirrored as Nodes", "usable", usable, "agents", sc.Agents, "took", time.Since(t1).Round(time.Millisecond))
	if err := r.deletePods(ctx, e, "run=bench-keepalive"); err != nil {
		return err
	}
	_ = poll(ctx, 30*time.Second, func() (bool, error) {
		v, ok := metricValue(ctx, e.brokerWeb+"/metrics", "k8sm_broker_offers_suppressed", nil)
		return ok && v == 1, nil
	})
	return nil
}

func agentName(sc Scenario, i int) string { return fmt.Sprintf("%s-a%05d", sc.Name, i) }

// waitNodes waits until n Nodes are Ready and carry no node.kubernetes.io
// taint (the node lifecycle controller puts not-ready on new Nodes), and
// returns how many are.
func (r *runner) waitNodes(ctx context.Context, e *scenarioEnv, n int) (int, error) {
	usable := 0
	last := ""
	err := poll(ctx, r.cfg.NodesTimeout, func() (bool, error) {
		if done, err := e.broker.exited(); done {
			return false, fmt.Errorf("the broker exited (%v)", err)
		}
		u, total, err := r.usableNodes(ctx, e)
		if err != nil {
			return false, nil
		}
		usable = u
		last = fmt.Sprintf("%d of %d Nodes usable (%d Nodes)", u, n, total)
		return u >= n, nil
	})
	if err != nil {
		return usable, fmt.Errorf("waiting for the agents' Nodes: %w (%s)", err, last)
	}
	return usable, nil
}

func (r *runner) usableNodes(ctx context.Context, e *scenarioEnv) (usable, total int, err error) {
	l, err := r.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		return 0, 0, err
	}
	for _, node := range l.Items {
		if strings.HasPrefix(node.Name, e.sc.Name+"-") && nodeUsable(&node) {
			usable++
		}
	}
	return usable, len(l.Items), nil
}

func nodeUsable(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if strings.HasPrefix(t.Key, "node.kubernetes.io/") {
			return false
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startScheduler runs the k8sm kube-scheduler (plugin/cmd/kube-scheduler)
// with the shipped mesos-scheduler profile and a stock profile beside it.
func (r *runner) startScheduler(ctx context.Context, e *scenarioEnv) error {
	conf, err := schedulerConfig(e.brokerRPC, r.kubeconfig, r.cfg.SchedulerQPS, e.sc.Knobs)
	if err != nil {
		return err
	}
	shippedGates, err := manifests.ShippedSchedulerFeatureGates()
	if err != nil {
		return err
	}
	path := filepath.Join(e.dir, "scheduler-config.yaml")
	if err := os.WriteFile(path, conf, 0o600); err != nil {
		return err
	}
	port, err := cluster.FreePort()
	if err != nil {
		return err
	}
	e.schedWeb = "https://127.0.0.1:" + strconv.Itoa(port)
	args := []string{"--config=" + path, "--secure-port=" + strconv.Itoa(port), "--bind-address=127.0.0.1",
		// No authentication here: loopback only, and pprof must be reachable.
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics,/debug/pprof/*", "--v=1"}
	if e.sc.Kind == "scheduler" {
		// Every bound pod's evaluated and feasible nodes (knobEvidence).
		args[len(args)-1] = "--v=2"
	}
	if g := featureGates(shippedGates, e.sc.Knobs); g != "" {
		args = append(args, "--feature-gates="+g)
	}
	e.sched, err = startChild("kube-scheduler", filepath.Join(e.dir, "scheduler.log"), filepath.Join(r.cfg.BinDir, "kube-scheduler"), args...)
	if err != nil {
		return err
	}
	return poll(ctx, 60*time.Second, func() (bool, error) {
		if done, err := e.sched.exited(); done {
			return false, fmt.Errorf("kube-scheduler exited (%v): see %s", err, filepath.Join(e.dir, "scheduler.log"))
		}
		return httpOK(ctx, e.schedWeb+"/readyz"), nil
	})
}

// schedulerConfig is the KubeSchedulerConfiguration shipped in
// manifests/scheduler.yaml, pointed at this broker and API server, with a
// second profile that is the stock scheduler (default plugins, DefaultBinder),
// and the scenario's knobs.
func schedulerConfig(brokerAddr, kubeconfig string, qps int, knobs SchedulerKnobs) ([]byte, error) {
	// The copy compiled into this binary: `make bench` builds it from the
	// tree it benchmarks, as `make up` does local-cluster.
	cfg, err := manifests.ShippedSchedulerConfig()
	if err != nil {
		return nil, err
	}
	if err := cfg.SetBrokerAddresses(brokerAddr); err != nil {
		return nil, err
	}
	// The bench broker serves plaintext on loopback, under the built-in
	// role policy (the shipped one says the same).
	if err := cfg.SetBrokerPlaintext(); err != nil {
		return nil, err
	}
	if err := cfg.SetRolePolicyFile(""); err != nil {
		return nil, err
	}
	if err := applyKnobs(cfg, knobs); err != nil {
		return nil, err
	}
	cfg.SetClientConnection(kubeconfig, float32(qps), 2*qps)
	// One replica: no election to wait for.
	cfg.SetLeaderElect(false)
	profiles, _ := cfg["profiles"].([]any)
	cfg["profiles"] = append(profiles, map[string]any{"schedulerName": StockScheduler})
	return cfg.YAML()
}

// profile takes CPU profiles of the broker, the scheduler and this process
// (mesos-sim and the pod creator) for ProfileSeconds.
func (r *runner) profile(ctx context.Context, e *scenarioEnv) func() []string {
	dir := filepath.Join(r.cfg.OutDir, "pprof")
	_ = os.MkdirAll(dir, 0o755)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var files []string
	get := func(name, url string) {
		defer wg.Done()
		path := filepath.Join(dir, e.sc.Name+"-"+name+".pprof")
		if err := fetch(ctx, url, path); err != nil {
			klog.ErrorS(err, "CPU profile", "of", name)
			return
		}
		mu.Lock()
		files = append(files, path)
		mu.Unlock()
	}
	s := strconv.Itoa(r.cfg.ProfileSeconds)
	wg.Add(2)
	go get("broker", e.brokerWeb+"/debug/pprof/profile?seconds="+s)
	go get("scheduler", e.schedWeb+"/debug/pprof/profile?seconds="+s)
	self := filepath.Join(dir, e.sc.Name+"-driver.pprof")
	f, err := os.Create(self)
	if err == nil {
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			f = nil
		}
	}
	t0 := time.Now()
	return func() []string {
		// The driver's profile covers the same window as the others'.
		if d := time.Duration(r.cfg.ProfileSeconds)*time.Second - time.Since(t0); d > 0 {
			time.Sleep(d)
		}
		if f != nil {
			pprof.StopCPUProfile()
			f.Close()
			mu.Lock()
			files = append(files, self)
			mu.Unlock()
		}
		wg.Wait()
		return files
	}
}

func (r *runner) teardown(e *scenarioEnv) {
	ctx := context.Background()
	for _, o := range e.others {
		o.stop()
	}
	e.sched.stop()
	// Pods first, while the broker still runs to kill their tasks.
	if r.kube != nil && e.broker != nil {
		_ = r.deletePods(ctx, e, "bench")
	}
	e.broker.stop()
	if e.sim != nil {
		e.sim.Close()
	}
	// The next scenario starts from a cluster without Nodes.
	if err := r.kube.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		klog.ErrorS(err, "Deleting the scenario's Nodes")
	}
	if err := r.kube.CoordinationV1().Leases(corev1.NamespaceNodeLease).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		klog.ErrorS(err, "Deleting the scenario's Node Leases")
	}
	_ = poll(ctx, 2*time.Minute, func() (bool, error) {
		l, err := r.kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil && len(l.Items) == 0, nil
	})
	runtime.GC()
}

// deletePods deletes the pods matching selector at once and waits until
// they are gone.
func (r *runner) deletePods(ctx context.Context, e *scenarioEnv, selector string) error {
	pods := r.kube.CoreV1().Pods("default")
	// One DELETE per pod from a pool of clients, repeated until none is
	// left: a DeleteCollection of 1,000 pods outlives the API server's
	// request timeout on a busy host.
	del := func(items []corev1.Pod) {
		names := make(chan string)
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name := range names {
					err := pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
					if err != nil && !apierrors.IsNotFound(err) {
						klog.ErrorS(err, "Deleting a pod", "pod", name)
					}
				}
			}()
		}
		for _, p := range items {
			names <- p.Name
		}
		close(names)
		wg.Wait()
	}
	if err := poll(ctx, 5*time.Minute, func() (bool, error) {
		l, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		del(l.Items)
		return len(l.Items) == 0, nil
	}); err != nil {
		return fmt.Errorf("deleting pods %s: %w", selector, err)
	}
	// Their tasks end (the broker kills them) and the agents' resources
	// come back before the next phase.
	if e.sim != nil {
		t0 := time.Now()
		if err := poll(ctx, 2*time.Minute, func() (bool, error) { return activeTasks(e.sim, brokerFramework) == 0, nil }); err != nil {
			klog.ErrorS(err, "Tasks of deleted pods still active", "pods", selector, "active", activeTasks(e.sim, brokerFramework))
		} else {
			klog.V(1).InfoS("Tasks of deleted pods ended", "pods", selector, "took", time.Since(t0).Round(time.Millisecond))
		}
	}
	return nil
}

func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond() })
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("not done after %v", timeout)
	}
	return err
}

// scheduleAttempts reads the scheduler's attempts of one profile by result;
// nil if the profile has none yet (or the scheduler did not answer).
func scheduleAttempts(ctx context.Context, schedWeb, profile string) map[string]float64 {
	out := map[string]float64{}
	answered := false
	for _, result := range []string{"scheduled", "unschedulable", "error"} {
		v, ok := metricValue(ctx, schedWeb+"/metrics", "scheduler_schedule_attempts_total", map[string]string{"profile": profile, "result": result})
		answered = answered || ok
		out[result] = v
	}
	if !answered {
		return nil
	}
	return out
}

// ExtensionPoints are the scheduler's extension points a phase's report
// breaks its time into (PreEnqueue runs as pods enter the queue, Bind in
// the parallel binding cycle).
var ExtensionPoints = []string{"PreEnqueue", "PreFilter", "Filter", "PostFilter", "PreScore", "Score", "Reserve", "Permit", "PreBind", "Bind"}

// extensionPointTotals reads, per extension point of profile, the sum of
// its durations (s) and how many there were, from
// scheduler_framework_extension_point_duration_seconds.
func extensionPointTotals(ctx context.Context, schedWeb, profile string) map[string][2]float64 {
	samples, ok := scrape(ctx, schedWeb+"/metrics")
	if !ok {
		return nil
	}
	out := map[string][2]float64{}
	for _, ep := range ExtensionPoints {
		labels := map[string]string{"profile": profile, "extension_point": ep}
		var sum, n float64
		for _, v := range matching(samples, "scheduler_framework_extension_point_duration_seconds_sum", labels) {
			sum += v
		}
		for _, v := range matching(samples, "scheduler_framework_extension_point_duration_seconds_count", labels) {
			n += v
		}
		out[ep] = [2]float64{sum, n}
	}
	return out
}

// extensionPointMeans is the mean duration (ms) of each extension point
// between two readings; points that did not run are left out.
func extensionPointMeans(before, after map[string][2]float64) map[string]float64 {
	if after == nil {
		return nil
	}
	out := map[string]float64{}
	for ep, a := range after {
		b := before[ep]
		if n := a[1] - b[1]; n > 0 {
			out[ep] = (a[0] - b[0]) / n * 1000
		}
	}
	return out
}
