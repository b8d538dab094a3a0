package bench

import (
	"bytes"
	"regexp"
	"strings"
	"testing"

	"github.com/k8sm/k8sm/plugin/mesosoffers"
)

func TestSchedulerVariationsEachChangeOneKnob(t *testing.T) {
	cfg := Config{Agents: []int{1000}, PacedPods: 300, SchedulerVariations: true, SchedulerVariationAgents: 1000, SchedulerVariationPods: 500, SchedulerVariationPercentage: 10}
	var names []string
	for _, s := range cfg.Scenarios() {
		if s.Kind != "scheduler" {
			continue
		}
		names = append(names, s.Name+": "+s.Knobs.String())
		if s.Stock || s.BrokerRoundTrips != 0 || s.Agents != 1000 || s.Pods != 500 || s.PacedPods != 300 {
			t.Errorf("%s: %+v, want k8sm alone with 1000 agents, 500 burst and 300 paced pods", s.Name, s)
		}
	}
	want := []string{
		"sched-base: none (as shipped)",
		"sched-pct-10: percentageOfNodesToScore: 10",
		"sched-batching: opportunisticBatching: true, PodTopologySpread without system defaults",
		"sched-async-api: SchedulerAsyncAPICalls=true",
		"sched-all: percentageOfNodesToScore: 10; opportunisticBatching: true, PodTopologySpread without system defaults; SchedulerAsyncAPICalls=true",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Errorf("scheduler scenarios\n%s\nwant\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	cfg.Only = regexp.MustCompile(`^sched-(base|batching)$`)
	if got := cfg.Scenarios(); len(got) != 2 || got[0].Name != "sched-base" || got[1].Name != "sched-batching" {
		t.Errorf("--only=^sched-(base|batching)$ runs %+v", got)
	}
	cfg.Only = nil
	cfg.SchedulerVariations = false
	for _, s := range cfg.Scenarios() {
		if s.Kind == "scheduler" {
			t.Errorf("%s runs without --scheduler-variations", s.Name)
		}
	}
}

// The knobs land where kube-scheduler and MesosOffers read them: the
// mesos-scheduler profile only, never the stock one.
func TestKnobsInTheSchedulerConfig(t *testing.T) {
	out, err := schedulerConfig("127.0.0.1:4242", "/x/admin.kubeconfig", 500, SchedulerKnobs{PercentageOfNodesToScore: 10, OpportunisticBatching: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := readConfig(t, out)
	for _, p := range cfg.Profiles {
		switch p.SchedulerName {
		case K8smScheduler:
			if p.PercentageOfNodesToScore == nil || *p.PercentageOfNodesToScore != 10 {
				t.Errorf("%s percentageOfNodesToScore %v, want 10:\n%s", K8smScheduler, p.PercentageOfNodesToScore, out)
			}
			spread := false
			for _, pc := range p.PluginConfig {
				if pc.Name == mesosoffers.Name && pc.Args["opportunisticBatching"] != true {
					t.Errorf("MesosOffers args %v, want opportunisticBatching: true", pc.Args)
				}
				if pc.Name == "PodTopologySpread" {
					// Upstream signs no pod while default constraints apply.
					spread = pc.Args["defaultingType"] == "List" && pc.Args["defaultConstraints"] == nil
				}
			}
			if !spread {
				t.Errorf("%s: PodTopologySpread keeps the system's default constraints, so no pod is signed:\n%s", K8smScheduler, out)
			}
		case StockScheduler:
			if p.PercentageOfNodesToScore != nil || len(p.PluginConfig) != 0 {
				t.Errorf("the stock profile got a knob: %+v", p)
			}
		}
	}
	base, err := schedulerConfig("127.0.0.1:4242", "/x/admin.kubeconfig", 500, SchedulerKnobs{})
	if err != nil {
		t.Fatal(err)
	}
	// The base is the profile as shipped: since the knob run of 2026-12-01
	// that has percentageOfNodesToScore 10, and batching still off.
	if !bytes.Contains(base, []byte("percentageOfNodesToScore: 10")) || bytes.Contains(base, []byte("opportunisticBatching: true")) {
		t.Errorf("the base is not the shipped profile (percentageOfNodesToScore 10, no batching):\n%s", base)
	}
	if g := featureGates("", SchedulerKnobs{FeatureGates: "SchedulerAsyncAPICalls=true"}); g != "SchedulerAsyncAPICalls=true" {
		t.Errorf("feature gates %q", g)
	}
	if g := featureGates("A=true", SchedulerKnobs{FeatureGates: "B=false"}); g != "A=true,B=false" {
		t.Errorf("feature gates %q, want the shipped ones then the scenario's", g)
	}
	if g := featureGates("", SchedulerKnobs{}); g != "" {
		t.Errorf("feature gates %q, want none", g)
	}
}

func TestSchedulerLogEvidence(t *testing.T) {
	log := `I1201 20:00:00.000000 1 framework.go:874] "Disabling signatures for profile because plugins do not support it." profile="stock-scheduler" plugins=["X"]
I1201 20:00:01.000000 1 schedule_one.go:483] "Successfully bound pod to node" pod="default/sched-batching-k8sm-burst-00001" node="n-a00001" evaluatedNodes=100 feasibleNodes=100
I1201 20:00:01.100000 1 schedule_one.go:483] "Successfully bound pod to node" pod="default/sched-batching-k8sm-burst-00002" node="n-a00002" evaluatedNodes=1 feasibleNodes=1
I1201 20:00:01.200000 1 schedule_one.go:99] "Something else" evaluatedNodes=7 feasibleNodes=7
`
	ev := readSchedulerLog(strings.NewReader(log))
	if ev.BoundPods != 2 || ev.EvaluatedNodesMean != 50.5 || ev.FeasibleNodesMean != 50.5 {
		t.Errorf("evidence %+v, want 2 bound pods, 50.5 nodes evaluated and feasible on average", ev)
	}
	if ev.SignaturesDisabled != "" {
		t.Errorf("signatures of the stock profile counted as %s's: %q", K8smScheduler, ev.SignaturesDisabled)
	}
	ev = readSchedulerLog(strings.NewReader(`I1201 20:00:00.000000 1 framework.go:874] "Disabling signatures for profile because plugins do not support it." profile="mesos-scheduler" plugins=["Foo"]` + "\n"))
	if ev.SignaturesDisabled != `plugins=["Foo"]` {
		t.Errorf("signatures disabled %q, want the plugins named", ev.SignaturesDisabled)
	}
}

func TestKnobTable(t *testing.T) {
	phase := func(mode string, rate, p50, p99 float64) PhaseResult {
		return PhaseResult{Scheduler: K8smScheduler, Mode: mode, Pods: 1000, Bound: 1000, BoundPerSecond: rate,
			CreateToBound:        Latency{Count: 1000, P50Ms: p50, P90Ms: p99 - 1, P99Ms: p99},
			Attempts:             map[string]float64{"scheduled": 1000, "unschedulable": 100},
			ExtensionPointMeanMs: map[string]float64{"PreFilter": 2.5, "Filter": 4, "Score": 0.75}}
	}
	sc := func(name string, k SchedulerKnobs, burst, paced float64, ev *KnobEvidence) ScenarioResult {
		return ScenarioResult{Scenario: Scenario{Name: name, Kind: "scheduler", Agents: 1000, Pods: 1000, PacedPods: 1000, Knobs: k},
			Phases: []PhaseResult{phase("burst", burst, 900, 2000), phase("paced", paced, 300, 1500)}, Evidence: ev}
	}
	res := &Results{Scenarios: []ScenarioResult{
		{Scenario: Scenario{Name: "n1000", Kind: "scale", Agents: 1000}},
		sc("sched-base", SchedulerKnobs{}, 50, 80, &KnobEvidence{BoundPods: 2000, EvaluatedNodesMean: 420, FeasibleNodesMean: 400, BatchAttempts: map[string]float64{"no_hint": 1100}}),
		sc("sched-batching", SchedulerKnobs{OpportunisticBatching: true}, 75, 80, &KnobEvidence{BoundPods: 2000, EvaluatedNodesMean: 120, FeasibleNodesMean: 110, BatchAttempts: map[string]float64{"hint_used": 700, "hint_not_used": 10, "no_hint": 390}}),
		sc("sched-async-api", SchedulerKnobs{FeatureGates: "SchedulerAsyncAPICalls=true"}, 25, 40, &KnobEvidence{AsyncAPICalls: map[string]float64{"pod_binding": 1000, "pod_status_patch": 100}}),
		{Scenario: Scenario{Name: "sched-all", Kind: "scheduler", Agents: 1000, Pods: 1000, Knobs: SchedulerKnobs{PercentageOfNodesToScore: 10}}, Error: "the broker exited"},
	}}
	var b bytes.Buffer
	writeKnobTable(&b, res.Scenarios)
	out := b.String()
	rows := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Split(l, "|"); len(f) > 2 {
			rows[strings.TrimSpace(f[1])] = l
		}
	}
	if !strings.HasPrefix(out, "### Scheduler knobs (k8sm only, 1000 agents, 1000 pods burst, 1000 paced)") {
		t.Errorf("heading:\n%s", out)
	}
	if _, ok := rows["n1000"]; ok {
		t.Errorf("a scale scenario in the knob table:\n%s", out)
	}
	for name, want := range map[string][]string{
		"sched-base":      {"none (as shipped)", "| 50.0 ", "900 / 1999 / 2000", "| 80.0 ", "300 / 1500", "1.10", "2.50 / 4.00 / 0.750", "420 / 400", "0 / 1100"},
		"sched-batching":  {"opportunisticBatching: true", "75.0 (1.50×)", "80.0 (1.00×)", "120 / 110", "700 / 1100"},
		"sched-async-api": {"SchedulerAsyncAPICalls=true", "25.0 (0.50×)", "40.0 (0.50×)", "| 1100 "},
		"sched-all":       {"percentageOfNodesToScore: 10", "error: the broker exited"},
	} {
		row, ok := rows[name]
		if !ok {
			t.Errorf("no row for %s:\n%s", name, out)
			continue
		}
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("%s row lacks %q:\n%s", name, w, row)
			}
		}
	}
	if strings.Contains(rows["sched-base"], "×") {
		t.Errorf("the base is compared with itself: %s", rows["sched-base"])
	}
	b.Reset()
	writeKnobTable(&b, res.Scenarios[:1])
	if b.Len() != 0 {
		t.Errorf("a run without knob scenarios prints a knob table:\n%s", b.String())
	}
}
