package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/cluster"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// brokerFramework is the broker's framework name in Mesos (its default).
const brokerFramework = "k8sm"

// PhaseResult is one batch of pods through one scheduler profile.
type PhaseResult struct {
	Scheduler string `json:"scheduler"`
	// Mode is "burst" (all pods created as fast as the API server takes
	// them) or "paced" (created at PacedRate pods/s).
	Mode        string  `json:"mode"`
	Label       string  `json:"label"`
	Pods        int     `json:"pods"`
	OfferedRate float64 `json:"offered_rate_pods_per_s,omitempty"`
	// CreateSeconds is how long creating every pod took.
	CreateSeconds float64 `json:"create_seconds"`
	Bound         int     `json:"bound"`
	// BoundPerSecond is bound pods ÷ (last bound − first creation).
	BoundPerSecond  float64 `json:"bound_pods_per_s"`
	CreateToBound   Latency `json:"create_to_bound"`
	Running         int     `json:"running,omitempty"`
	RunningPerSec   float64 `json:"running_pods_per_s,omitempty"`
	CreateToRunning Latency `json:"create_to_running"`
	// Attempts counts the scheduler's attempts for this phase's profile
	// while it ran, by result (scheduled, unschedulable, error), from
	// scheduler_schedule_attempts_total: how often a pod was tried before
	// it was bound.
	Attempts map[string]float64 `json:"schedule_attempts,omitempty"`
	// ExtensionPointMeanMs is the mean duration of each extension point
	// of this phase's profile while it ran (ms).
	ExtensionPointMeanMs map[string]float64 `json:"extension_point_mean_ms,omitempty"`
	// Offers is what the broker did with offers during a k8sm phase.
	Offers *PhaseOffers `json:"broker_offers,omitempty"`
	// BindPhases is where a k8sm phase's binds spent their time: the
	// plugin's Bind and the broker's Launch, phase by phase.
	BindPhases []PhaseTiming `json:"bind_phases,omitempty"`
	// CPU is what the broker and the scheduler spent from the phase's
	// start to its last pod bound (or its timeout); DeleteCPU, while its
	// pods were deleted after it. Both processes run for the whole
	// scenario, so their totals alone cannot say which phase spent what.
	CPU       *PhaseCPU `json:"cpu,omitempty"`
	DeleteCPU *PhaseCPU `json:"delete_cpu,omitempty"`
	// Events is what the scheduler handled (informer events, pods queued,
	// MesosOffers' PreFilter answers) and the API server wrote to pods and
	// Nodes over the same stretch as CPU.
	Events *PhaseEvents `json:"events,omitempty"`
	Error  string       `json:"error,omitempty"`
}

func benchPod(scheduler, name, run string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"bench": "true", "run": run}},
		Spec: corev1.PodSpec{
			SchedulerName: scheduler,
			// The stock profile's TaintToleration must let pods onto the
			// agents' Nodes; the mesos-scheduler profile needs no toleration.
			Tolerations:                   []corev1.Toleration{{Key: taskinfo.AgentTaintKey, Operator: corev1.TolerationOpExists}},
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{Name: "c", Image: cluster.WebappImage,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}}}},
		},
	}
}

// podClock records when each pod was created and when its binding was seen.
type podClock struct {
	mu      sync.Mutex
	created map[string]time.Time
	uid     map[string]types.UID
	bound   map[string]time.Time
}

func (r *runner) runPhase(ctx context.Context, e *scenarioEnv, scheduler, mode string, n int) PhaseResult {
	label := fmt.Sprintf("%s-%s-%s", e.sc.Name, map[string]string{K8smScheduler: "k8sm", StockScheduler: "stock"}[scheduler], mode)
	pr := PhaseResult{Scheduler: scheduler, Mode: mode, Label: label, Pods: n}
	klog.InfoS("Phase", "run", label, "pods", n)
	pods := r.kube.CoreV1().Pods("default")
	clk := &podClock{created: map[string]time.Time{}, uid: map[string]types.UID{}, bound: map[string]time.Time{}}
	sel := metav1.ListOptions{LabelSelector: "run=" + label}
	l, err := pods.List(ctx, sel)
	if err != nil {
		pr.Error = err.Error()
		return pr
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := watchtools.NewRetryWatcherWithContext(wctx, l.ResourceVersion, &cache.ListWatch{WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		o.LabelSelector = sel.LabelSelector
		return pods.Watch(ctx, o)
	}})
	if err != nil {
		pr.Error = err.Error()
		return pr
	}
	defer w.Stop()
	allBound := make(chan struct{})
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Spec.NodeName == "" {
				continue
			}
			now := time.Now()
			clk.mu.Lock()
			if _, seen := clk.bound[p.Name]; !seen {
				clk.bound[p.Name] = now
				if len(clk.bound) == n {
					close(allBound)
				}
			}
			clk.mu.Unlock()
		}
	}()

	// Creation: a pool of clients; in paced mode pod i is due at i/rate.
	var rate float64
	if mode == "paced" {
		rate = r.cfg.PacedRate
		pr.OfferedRate = rate
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var createErr error
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				name := fmt.Sprintf("%s-%05d", label, i)
				t0 := time.Now()
				p, err := pods.Create(ctx, benchPod(scheduler, name, label), metav1.CreateOptions{})
				if err != nil {
					errMu.Lock()
					createErr = err
					errMu.Unlock()
					continue
				}
				clk.mu.Lock()
				clk.created[name], clk.uid[name] = t0, p.UID
				clk.mu.Unlock()
			}
		}()
	}
	start := time.Now()
	for i := range n {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	pr.CreateSeconds = secs(time.Since(start))
	if createErr != nil {
		pr.Error = fmt.Sprintf("creating pods: %v", createErr)
	}
	timeout := r.cfg.PhaseTimeout
	select {
	case <-allBound:
	case <-time.After(timeout):
		pr.Error = fmt.Sprintf("not every pod bound within %v", timeout)
	case <-ctx.Done():
		pr.Error = ctx.Err().Error()
	}
	clk.mu.Lock()
	var first, lastBound time.Time
	var toBound []time.Duration
	for name, c := range clk.created {
		if first.IsZero() || c.Before(first) {
			first = c
		}
		if b, ok := clk.bound[name]; ok {
			toBound = append(toBound, b.Sub(c))
			if b.After(lastBound) {
				lastBound = b
			}
		}
	}
	created := make(map[string]time.Time, len(clk.created))
	uids := make(map[string]types.UID, len(clk.uid))
	for k, v := range clk.created {
		created[k], uids[k] = v, clk.uid[k]
	}
	clk.mu.Unlock()
	pr.Bound = len(toBound)
	pr.CreateToBound = Summarize(toBound)
	if pr.Bound > 0 {
		pr.BoundPerSecond = perSecond(pr.Bound, lastBound.Sub(first))
	}
	if scheduler != K8smScheduler || pr.Bound == 0 {
		return pr
	}
	// TASK_RUNNING at the master: its status timestamps (the hollow agent
	// stamps the update as it sends it to the in-process master).
	byPod := map[types.UID]string{}
	for name, uid := range uids {
		byPod[uid] = name
	}
	var running map[string]float64
	_ = wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(context.Context) (bool, error) {
		running = runningSince(e.sim, brokerFramework, byPod)
		return len(running) >= pr.Bound, nil
	})
	var toRunning []time.Duration
	var lastRunning time.Time
	for name, ts := range running {
		at := time.Unix(0, int64(ts*1e9))
		toRunning = append(toRunning, at.Sub(created[name]))
		if at.After(lastRunning) {
			lastRunning = at
		}
	}
	pr.Running = len(toRunning)
	pr.CreateToRunning = Summarize(toRunning)
	if pr.Running > 0 {
		pr.RunningPerSec = perSecond(pr.Running, lastRunning.Sub(first))
	}
	return pr
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

// simState is the part of /master/state the benchmark reads.
type simState struct {
	Frameworks []struct {
		Name  string    `json:"name"`
		Tasks []simTask `json:"tasks"`
	} `json:"frameworks"`
}

type simTask struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Statuses []struct {
		State     string  `json:"state"`
		Timestamp float64 `json:"timestamp"`
	} `json:"statuses"`
}

func readState(sim *mesossim.Sim) simState {
	var st simState
	m := sim.Leader()
	if m == nil {
		return st
	}
	b, err := json.Marshal(m.State())
	if err == nil {
		_ = json.Unmarshal(b, &st)
	}
	return st
}

// runningSince maps the name of each pod of want (by uid) whose task
// reached TASK_RUNNING to the timestamp of its first TASK_RUNNING status.
func runningSince(sim *mesossim.Sim, framework string, want map[types.UID]string) map[string]float64 {
	out := map[string]float64{}
	for _, fw := range readState(sim).Frameworks {
		if fw.Name != framework {
			continue
		}
		for _, t := range fw.Tasks {
			name, ok := want[taskinfo.PodUID(t.ID)]
			if !ok {
				continue
			}
			ts := make([]float64, 0, 1)
			for _, s := range t.Statuses {
				if s.State == "TASK_RUNNING" {
					ts = append(ts, s.Timestamp)
				}
			}
			if len(ts) > 0 {
				sort.Float64s(ts)
				out[name] = ts[0]
			}
		}
	}
	return out
}

// activeTasks counts the framework's tasks that have not ended.
func activeTasks(sim *mesossim.Sim, framework string) int {
	n := 0
	for _, fw := range readState(sim).Frameworks {
		if fw.Name != framework {
			continue
		}
		for _, t := range fw.Tasks {
			switch t.State {
			case "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR":
			default:
				n++
			}
		}
	}
	return n
}
