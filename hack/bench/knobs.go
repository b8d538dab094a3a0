package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/k8sm/k8sm/manifests"
)

// Scheduler knobs (issue #16): scenarios of kind "scheduler" run only the
// k8sm phases with one knob of the k8sm kube-scheduler changed from what
// manifests/scheduler.yaml ships, beside a base that changes nothing.

// SchedulerKnobs are the knobs a scenario sets.
type SchedulerKnobs struct {
	// PercentageOfNodesToScore of the mesos-scheduler profile; 0 leaves it
	// unset (the scheduler's adaptive default: 50% less 1% per 125 nodes,
	// at least 5%, and never fewer than 100 feasible nodes).
	PercentageOfNodesToScore int `json:"percentage_of_nodes_to_score,omitempty"`
	// OpportunisticBatching is MesosOffers' args.opportunisticBatching,
	// and PodTopologySpread of the profile without the system's default
	// constraints (defaultingType List, none listed): upstream's
	// PodTopologySpread refuses to sign any pod while it has default
	// constraints, so without this no pod of the profile is ever batched
	// (the stock profile's neither).
	OpportunisticBatching bool `json:"opportunistic_batching,omitempty"`
	// FeatureGates are added to the scheduler's --feature-gates.
	FeatureGates string `json:"feature_gates,omitempty"`
}

// String names the knobs as a reader of the table knows them.
func (k SchedulerKnobs) String() string {
	var out []string
	if k.PercentageOfNodesToScore > 0 {
		out = append(out, fmt.Sprintf("percentageOfNodesToScore: %d", k.PercentageOfNodesToScore))
	}
	if k.OpportunisticBatching {
		out = append(out, "opportunisticBatching: true, PodTopologySpread without system defaults")
	}
	if k.FeatureGates != "" {
		out = append(out, k.FeatureGates)
	}
	if len(out) == 0 {
		return "none (as shipped)"
	}
	return strings.Join(out, "; ")
}

// AsyncAPICallsGate is the kube-scheduler feature gate (beta, off by
// default in 1.37) that sends the scheduler's API calls (status patches,
// DefaultBinder's and MesosOffers' Bindings) through an asynchronous
// dispatcher.
const AsyncAPICallsGate = "SchedulerAsyncAPICalls"

// schedulerVariations are the knob scenarios: the base, each knob alone,
// and all together.
func (c Config) schedulerVariations(base Scenario) []Scenario {
	pct := c.SchedulerVariationPercentage
	knobs := []struct {
		name string
		k    SchedulerKnobs
	}{
		{"sched-base", SchedulerKnobs{}},
		{fmt.Sprintf("sched-pct-%d", pct), SchedulerKnobs{PercentageOfNodesToScore: pct}},
		{"sched-batching", SchedulerKnobs{OpportunisticBatching: true}},
		{"sched-async-api", SchedulerKnobs{FeatureGates: AsyncAPICallsGate + "=true"}},
		{"sched-all", SchedulerKnobs{PercentageOfNodesToScore: pct, OpportunisticBatching: true, FeatureGates: AsyncAPICallsGate + "=true"}},
	}
	var out []Scenario
	for _, kn := range knobs {
		s := base
		s.Name, s.Kind, s.Agents, s.Pods, s.PacedPods = kn.name, "scheduler", c.SchedulerVariationAgents, c.SchedulerVariationPods, c.PacedPods
		s.Knobs = kn.k
		out = append(out, s)
	}
	return out
}

// applyKnobs sets a scenario's knobs on the shipped configuration.
func applyKnobs(cfg manifests.SchedulerConfig, k SchedulerKnobs) error {
	if k.PercentageOfNodesToScore > 0 {
		found := false
		profiles, _ := cfg["profiles"].([]any)
		for _, p := range profiles {
			if pm, _ := p.(map[string]any); pm["schedulerName"] == K8smScheduler {
				pm["percentageOfNodesToScore"] = k.PercentageOfNodesToScore
				found = true
			}
		}
		if !found {
			return fmt.Errorf("manifests/scheduler.yaml has no %s profile to set percentageOfNodesToScore on", K8smScheduler)
		}
	}
	if k.OpportunisticBatching {
		all, err := cfg.MesosOffersArgs()
		if err != nil {
			return err
		}
		for _, a := range all {
			a["opportunisticBatching"] = true
		}
		profiles, _ := cfg["profiles"].([]any)
		for _, p := range profiles {
			if pm, _ := p.(map[string]any); pm["schedulerName"] == K8smScheduler {
				pcs, _ := pm["pluginConfig"].([]any)
				pm["pluginConfig"] = append(pcs, map[string]any{"name": "PodTopologySpread",
					"args": map[string]any{"defaultingType": "List"}})
			}
		}
	}
	return nil
}

// featureGates is the scheduler's --feature-gates: the shipped Deployment's,
// then the scenario's (a later setting of a gate wins).
func featureGates(shipped string, k SchedulerKnobs) string {
	var out []string
	for _, g := range []string{shipped, k.FeatureGates} {
		if g != "" {
			out = append(out, g)
		}
	}
	return strings.Join(out, ",")
}

// KnobEvidence is what shows a knob took effect, from the scheduler's log
// (at --v=2) and metrics at the end of the scenario.
type KnobEvidence struct {
	// BoundPods counts "Successfully bound pod to node" lines; the means
	// are of their evaluatedNodes and feasibleNodes (a pod placed on a
	// batching hint evaluated 1 node).
	BoundPods          int     `json:"bound_pods_logged"`
	EvaluatedNodesMean float64 `json:"evaluated_nodes_mean"`
	FeasibleNodesMean  float64 `json:"feasible_nodes_mean"`
	// SignaturesDisabled is set when the scheduler said at start that the
	// profile cannot batch (a plugin that does not sign pods).
	SignaturesDisabled string `json:"signatures_disabled,omitempty"`
	// BatchAttempts is scheduler_batch_attempts_total of the profile by
	// result (hint_used, hint_not_used, no_hint).
	BatchAttempts map[string]float64 `json:"batch_attempts,omitempty"`
	// AsyncAPICalls is scheduler_async_api_call_execution_total by
	// call_type (present only with SchedulerAsyncAPICalls on).
	AsyncAPICalls map[string]float64 `json:"async_api_calls,omitempty"`
}

var (
	boundLine       = regexp.MustCompile(`"Successfully bound pod to node".*\bevaluatedNodes=(\d+) feasibleNodes=(\d+)`)
	noSignatureLine = regexp.MustCompile(`"Disabling signatures for profile[^"]*" profile="` + K8smScheduler + `"(.*)$`)
)

// readSchedulerLog gathers the log's evidence of the knobs.
func readSchedulerLog(r io.Reader) KnobEvidence {
	var ev KnobEvidence
	var evaluated, feasible int
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if m := boundLine.FindStringSubmatch(line); m != nil {
			e, _ := strconv.Atoi(m[1])
			f, _ := strconv.Atoi(m[2])
			ev.BoundPods++
			evaluated += e
			feasible += f
			continue
		}
		if m := noSignatureLine.FindStringSubmatch(line); m != nil {
			ev.SignaturesDisabled = strings.TrimSpace(m[1])
			if ev.SignaturesDisabled == "" {
				ev.SignaturesDisabled = "yes"
			}
		}
	}
	if ev.BoundPods > 0 {
		ev.EvaluatedNodesMean = float64(evaluated) / float64(ev.BoundPods)
		ev.FeasibleNodesMean = float64(feasible) / float64(ev.BoundPods)
	}
	return ev
}

// knobEvidence reads the scheduler's log and metrics after a scenario.
func knobEvidence(ctx context.Context, logPath, schedWeb string) *KnobEvidence {
	var ev KnobEvidence
	if f, err := os.Open(logPath); err == nil {
		ev = readSchedulerLog(f)
		f.Close()
	}
	if samples, ok := scrape(ctx, schedWeb+"/metrics"); ok {
		for _, s := range samples["scheduler_batch_attempts_total"] {
			if string(s.Metric["profile"]) == K8smScheduler {
				if ev.BatchAttempts == nil {
					ev.BatchAttempts = map[string]float64{}
				}
				ev.BatchAttempts[string(s.Metric["result"])] += float64(s.Value)
			}
		}
		for _, s := range samples["scheduler_async_api_call_execution_total"] {
			if ev.AsyncAPICalls == nil {
				ev.AsyncAPICalls = map[string]float64{}
			}
			ev.AsyncAPICalls[string(s.Metric["call_type"])] += float64(s.Value)
		}
	}
	return &ev
}

// writeKnobTable prints the knob scenarios beside their base.
func writeKnobTable(w io.Writer, ss []ScenarioResult) {
	var knobs []ScenarioResult
	var base *ScenarioResult
	for i := range ss {
		if ss[i].Kind != "scheduler" {
			continue
		}
		knobs = append(knobs, ss[i])
		if ss[i].Knobs == (SchedulerKnobs{}) && base == nil {
			base = &ss[i]
		}
	}
	if len(knobs) == 0 {
		return
	}
	fmt.Fprintf(w, "### Scheduler knobs (k8sm only, %d agents, %d pods burst, %d paced)\n\n", knobs[0].Agents, knobs[0].Pods, knobs[0].PacedPods)
	tw := startTable(w, "scenario", "knob", "burst pods/s (÷ base)", "burst create→bound p50/p90/p99 ms", "paced pods/s (÷ base)", "paced create→bound p50/p99 ms", "attempts/pod burst", "PreFilter / Filter / Score ms", "evaluated / feasible nodes per pod", "batch hints used / tried", "async API calls")
	rate := func(s ScenarioResult, mode string) string {
		p := findPhase(s, K8smScheduler, mode)
		if p == nil {
			return "-"
		}
		out := fmt.Sprintf("%.1f", p.BoundPerSecond)
		if base != nil && base.Name != s.Name {
			if b := findPhase(*base, K8smScheduler, mode); b != nil {
				out += " (" + ratio(p.BoundPerSecond, b.BoundPerSecond) + ")"
			}
		}
		return out
	}
	for _, s := range knobs {
		if s.Error != "" && len(s.Phases) == 0 {
			fmt.Fprintf(tw, "| %s\t %s\t error: %s\t\t\t\t\t\t\t\t\t\n", s.Name, s.Knobs, strings.ReplaceAll(s.Error, "|", "/"))
			continue
		}
		burst, paced := "-", "-"
		attempts, eps := "-", "-"
		if p := findPhase(s, K8smScheduler, "burst"); p != nil {
			burst = ms3(p.CreateToBound)
			if p.Attempts != nil && p.Pods > 0 {
				attempts = fmt.Sprintf("%.2f", (p.Attempts["scheduled"]+p.Attempts["unschedulable"]+p.Attempts["error"])/float64(p.Pods))
			}
			if m := p.ExtensionPointMeanMs; m != nil {
				eps = fmt.Sprintf("%s / %s / %s", epMs(m, "PreFilter"), epMs(m, "Filter"), epMs(m, "Score"))
			}
		}
		if p := findPhase(s, K8smScheduler, "paced"); p != nil && p.CreateToBound.Count > 0 {
			paced = fmt.Sprintf("%s / %s", num(p.CreateToBound.P50Ms), num(p.CreateToBound.P99Ms))
		}
		nodes, hints, async := "-", "-", "-"
		if ev := s.Evidence; ev != nil {
			if ev.BoundPods > 0 {
				nodes = fmt.Sprintf("%.0f / %.0f", ev.EvaluatedNodesMean, ev.FeasibleNodesMean)
			}
			if ev.SignaturesDisabled != "" {
				hints = "signatures off: " + ev.SignaturesDisabled
			} else if len(ev.BatchAttempts) > 0 {
				var tried float64
				for _, v := range ev.BatchAttempts {
					tried += v
				}
				hints = fmt.Sprintf("%g / %g", ev.BatchAttempts["hint_used"], tried)
			}
			if len(ev.AsyncAPICalls) > 0 {
				var total float64
				for _, v := range ev.AsyncAPICalls {
					total += v
				}
				async = fmt.Sprintf("%g", total)
			}
		}
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %s\t %s\t %s\t %s\t %s\t %s\t %s\t %s\t\n", s.Name, s.Knobs, rate(s, "burst"), burst,
			rate(s, "paced"), paced, attempts, eps, nodes, hints, async)
	}
	endTable(w, tw)
}

func epMs(m map[string]float64, ep string) string {
	v, ok := m[ep]
	if !ok {
		return "-"
	}
	return num3(v)
}
