// Package bench is the k8sm benchmark driver behind `make bench`: on one real
// etcd and kube-apiserver (hack/cluster) it runs the mesos-sim test double
// with hollow agents in-process, the broker and the k8sm kube-scheduler as
// child processes, and measures how fast pods go from creation to bound and
// to TASK_RUNNING, side by side with the stock scheduler's profile on the
// same Nodes. Hollow agents answer every launch with TASK_RUNNING and run
// nothing, so no figure here includes starting a container.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/cluster"
)

// HollowNote goes wherever a figure is shown.
const HollowNote = "mesos-sim hollow agents: launches answer TASK_RUNNING and run nothing (no executor, no kubelet, no container)"

// CheckpointNote says whether the hollow agents wrote each task's checkpoint
// to disk: on this machine that work competes with what is measured, while a
// real agent does it on its own machine.
func CheckpointNote(checkpoint bool) string {
	if checkpoint {
		return "hollow agents checkpoint every task to disk, as a real agent does (on the measured machine's cores)"
	}
	return "hollow agents do NOT checkpoint tasks to disk (--hollow-checkpoint=false): a real agent's checkpoint costs its own machine, not the scheduler's"
}

// Config is what `k8sm-bench` is told.
type Config struct {
	BinDir string `json:"-"`
	OutDir string `json:"-"`
	// Self is the k8sm-bench executable, re-run as the broker's process.
	Self string `json:"-"`

	Agents           []int         `json:"agents"`
	HollowCheckpoint bool          `json:"hollow_checkpoint"`
	Pods             int           `json:"pods"`
	PacedRate        float64       `json:"paced_rate_pods_per_s"`
	PacedPods        int           `json:"paced_pods"`
	BrokerRoundTrips int           `json:"broker_round_trips"`
	VariationAgents  int           `json:"variation_agents"`
	VariationPods    int           `json:"variation_pods"`
	Variations       bool          `json:"variations"`
	ProfileSeconds   int           `json:"profile_seconds"`
	BrokerQPS        float32       `json:"broker_kube_qps"`
	SchedulerQPS     int           `json:"scheduler_kube_qps"`
	PhaseTimeout     time.Duration `json:"-"`
	NodesTimeout     time.Duration `json:"-"`

	// BrokerMemoryLimit is the broker's --memory-limit ("" leaves the
	// broker's default: none, as in the shipped Deployment).
	BrokerMemoryLimit string `json:"broker_memory_limit,omitempty"`

	// SchedulerVariations adds the scheduler knob scenarios (knobs.go).
	SchedulerVariations          bool `json:"scheduler_variations"`
	SchedulerVariationAgents     int  `json:"scheduler_variation_agents"`
	SchedulerVariationPods       int  `json:"scheduler_variation_pods"`
	SchedulerVariationPercentage int  `json:"scheduler_variation_percentage"`
	// Only, when set, keeps the scenarios whose name it matches.
	Only *regexp.Regexp `json:"-"`
}

// Scenario is one set-up: a fresh simulated Mesos, broker and scheduler.
type Scenario struct {
	Name               string   `json:"name"`
	Kind               string   `json:"kind"` // "scale", "variation" or "scheduler"
	Agents             int      `json:"agents"`
	Pods               int      `json:"pods"`
	PacedPods          int      `json:"paced_pods"`
	BrokerRoundTrips   int      `json:"broker_round_trips"`
	Stock              bool     `json:"stock"`
	AllocationInterval Duration `json:"allocation_interval"`
	RefuseSeconds      float64  `json:"refuse_seconds"`
	BatchWindow        Duration `json:"batch_window"`
	Frameworks         int      `json:"frameworks"`
	Profile            bool     `json:"profile"`
	// Knobs of the k8sm kube-scheduler (kind "scheduler"; none elsewhere).
	Knobs SchedulerKnobs `json:"scheduler_knobs"`
}

// Duration prints as Go does in JSON.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Scenarios lists what a run does.
func (c Config) Scenarios() []Scenario {
	base := Scenario{AllocationInterval: Duration(time.Second), RefuseSeconds: 5, BatchWindow: Duration(100 * time.Millisecond), Frameworks: 1}
	var out []Scenario
	largest := 0
	for _, n := range c.Agents {
		largest = max(largest, n)
	}
	for _, n := range c.Agents {
		s := base
		s.Name, s.Kind, s.Agents, s.Pods, s.PacedPods, s.BrokerRoundTrips, s.Stock = fmt.Sprintf("n%d", n), "scale", n, c.Pods, c.PacedPods, c.BrokerRoundTrips, true
		s.Profile = c.ProfileSeconds > 0 && n == largest
		out = append(out, s)
	}
	if c.Variations {
		out = append(out, c.mesosVariations(base)...)
	}
	if c.SchedulerVariations {
		out = append(out, c.schedulerVariations(base)...)
	}
	if c.Only != nil {
		out = slices.DeleteFunc(out, func(s Scenario) bool { return !c.Only.MatchString(s.Name) })
	}
	return out
}

// mesosVariations vary what matters to Mesos at a small size.
func (c Config) mesosVariations(base Scenario) []Scenario {
	var out []Scenario
	vary := func(name string, f func(*Scenario)) {
		s := base
		s.Name, s.Kind, s.Agents, s.Pods = name, "variation", c.VariationAgents, c.VariationPods
		f(&s)
		out = append(out, s)
	}
	vary("var-base", func(*Scenario) {})
	vary("var-alloc-250ms", func(s *Scenario) { s.AllocationInterval = Duration(250 * time.Millisecond) })
	vary("var-alloc-3s", func(s *Scenario) { s.AllocationInterval = Duration(3 * time.Second) })
	vary("var-refuse-1s", func(s *Scenario) { s.RefuseSeconds = 1 })
	vary("var-refuse-30s", func(s *Scenario) { s.RefuseSeconds = 30 })
	vary("var-batch-10ms", func(s *Scenario) { s.BatchWindow = Duration(10 * time.Millisecond) })
	vary("var-batch-500ms", func(s *Scenario) { s.BatchWindow = Duration(500 * time.Millisecond) })
	vary("var-2-frameworks", func(s *Scenario) { s.Frameworks = 2 })
	return out
}

// Results is the JSON file.
type Results struct {
	Note      string           `json:"note"`
	Machine   Machine          `json:"machine"`
	Config    Config           `json:"config"`
	Started   time.Time        `json:"started"`
	Finished  time.Time        `json:"finished"`
	Scenarios []ScenarioResult `json:"scenarios"`
	Targets   []Target         `json:"targets"`
}

// Run runs every scenario and writes the table to stdout and the JSON file.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	res := &Results{Note: HollowNote + "; " + CheckpointNote(cfg.HollowCheckpoint), Machine: machine(), Config: cfg, Started: time.Now()}
	state, err := os.MkdirTemp("", "k8sm-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(state)
	ccfg, err := cluster.TestConfig(filepath.Join(state, "cluster"), cfg.BinDir)
	if err != nil {
		return nil, err
	}
	// The control plane only: this driver runs its own Mesos double,
	// broker and scheduler (Agents > 0 would start the local cluster's).
	ccfg.Agents = 0
	ccfg.Containerd = false // hollow agents: nothing runs
	klog.InfoS("Bringing up etcd, kube-apiserver, kube-controller-manager", "state", ccfg.StateDir)
	t0 := time.Now()
	_, err = cluster.Up(ctx, ccfg)
	defer func() {
		if err := cluster.Down(context.Background(), ccfg.StateDir); err != nil {
			klog.ErrorS(err, "Tearing the benchmark cluster down")
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("bringing the cluster up: %w", err)
	}
	klog.InfoS("Cluster up", "took", time.Since(t0).Round(time.Millisecond))
	kc := ccfg.PKI().Kubeconfig("admin")
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		return nil, err
	}
	// Creating 1,000 pods as fast as the API server takes them needs far
	// more than client-go's default 5 requests/s.
	rc.QPS, rc.Burst = 2000, 4000
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	r := &runner{cfg: cfg, kube: cs, kubeconfig: kc}
	for _, sc := range cfg.Scenarios() {
		if ctx.Err() != nil {
			break
		}
		klog.InfoS("Scenario", "name", sc.Name, "agents", sc.Agents, "pods", sc.Pods)
		start := time.Now()
		sr := r.runScenario(ctx, sc)
		sr.WallSeconds = secs(time.Since(start))
		if sr.Error != "" {
			klog.ErrorS(nil, "Scenario failed", "name", sc.Name, "err", sr.Error)
		}
		res.Scenarios = append(res.Scenarios, sr)
		res.Finished = time.Now()
		res.Targets = targets(res.Scenarios)
		// Written after every scenario: a run cut short keeps what it measured.
		if err := writeJSON(filepath.Join(cfg.OutDir, "results.json"), res); err != nil {
			return res, err
		}
	}
	res.Machine.LoadAvgEnd = loadAvg()
	res.Finished = time.Now()
	res.Targets = targets(res.Scenarios)
	return res, writeJSON(filepath.Join(cfg.OutDir, "results.json"), res)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func secs(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// Machine is what the run ran on.
type Machine struct {
	CPUs         int    `json:"cpus"`
	CPUModel     string `json:"cpu_model"`
	MemoryGiB    int    `json:"memory_gib"`
	Kernel       string `json:"kernel"`
	GoVersion    string `json:"go_version"`
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), LoadAvgStart: loadAvg()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGiB = (kb + 512*1024) / (1024 * 1024)
		}
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return m
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
