package bench

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"k8s.io/component-base/metrics/testutil"
)

// phasePage writes a /metrics page holding histogram name with buckets of
// 0.1, 0.2 and 0.4 s: per phase, the cumulative counts of those and +Inf,
// and the sum (s).
func phasePage(name string, series map[string][5]float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP %s Phases.\n# TYPE %s histogram\n", name, name)
	for ph, v := range series {
		for i, le := range []string{"0.1", "0.2", "0.4", "+Inf"} {
			fmt.Fprintf(&b, "%s_bucket{phase=%q,le=%q} %g\n", name, ph, le, v[i])
		}
		fmt.Fprintf(&b, "%s_sum{phase=%q} %g\n%s_count{phase=%q} %g\n", name, ph, v[4], name, ph, v[3])
	}
	return b.String()
}

func parsePage(t *testing.T, page string) testutil.Metrics {
	t.Helper()
	samples := testutil.NewMetrics()
	if err := testutil.ParseMetrics(page, &samples); err != nil {
		t.Fatalf("parsing %s: %v", page, err)
	}
	return samples
}

// TestBindPhaseRows: the bind phase rows are what each phase recorded while
// the bench phase ran (not since the scheduler started), in the order the
// phases run; p99 is interpolated in its bucket, or reported as beyond the
// largest one.
func TestBindPhaseRows(t *testing.T) {
	schedBefore := parsePage(t, phasePage(BindPhaseMetric, map[string][5]float64{
		"reserve_answer":   {10, 10, 10, 10, 0.5},
		"host_ports_patch": {10, 10, 10, 10, 0.2},
		"launch":           {10, 10, 10, 10, 0.3},
		"binding":          {10, 10, 10, 10, 0.1},
	}))
	schedAfter := parsePage(t, phasePage(BindPhaseMetric, map[string][5]float64{
		// 100 more, all in (0.1, 0.2]: mean 150 ms, p99 199 ms.
		"reserve_answer": {10, 110, 110, 110, 15.5},
		// None more: no row.
		"host_ports_patch": {10, 10, 10, 10, 0.2},
		// New since: 100 in [0, 0.1], 5 ms each.
		"other_claims": {100, 100, 100, 100, 0.5},
		// 100 more in (0.2, 0.4]: mean 300 ms, p99 398 ms.
		"launch": {10, 10, 110, 110, 30.3},
		// 50 in (0.2, 0.4], 50 beyond: p99 above 400 ms.
		"binding": {10, 10, 60, 110, 40.1},
	}))
	brokerAfter := parsePage(t, phasePage(LaunchPhaseMetric, map[string][5]float64{
		"batch_wait": {0, 100, 100, 100, 10},
	}))
	before := map[string]map[string]histo{"scheduler": readHistograms(schedBefore, BindPhaseMetric)} // the broker did not answer
	after := map[string]map[string]histo{
		"scheduler": readHistograms(schedAfter, BindPhaseMetric),
		"broker":    readHistograms(brokerAfter, LaunchPhaseMetric),
	}
	got := phaseTimings(before, after)
	var phases []string
	for _, p := range got {
		phases = append(phases, p.Component+"/"+p.Phase)
	}
	if want := "scheduler/reserve_answer scheduler/other_claims scheduler/launch scheduler/binding broker/batch_wait"; strings.Join(phases, " ") != want {
		t.Fatalf("phases %q, want %q", phases, want)
	}

	sc := ScenarioResult{Scenario: Scenario{Name: "n1000", Kind: "scale", Agents: 1000}, Phases: []PhaseResult{
		{Scheduler: K8smScheduler, Mode: "burst", Pods: 100, Bound: 100, ExtensionPointMeanMs: map[string]float64{"Bind": 652.3}, BindPhases: got},
		{Scheduler: StockScheduler, Mode: "burst", Pods: 100, Bound: 100, ExtensionPointMeanMs: map[string]float64{"Bind": 350}},
		{Scheduler: K8smScheduler, Mode: "paced", Pods: 100, Bound: 100},
	}}
	out := reportOf(sc)
	lacksNone(t, out,
		"### Where k8sm's Bind goes",
		"| agents | load | component | phase | count | mean ms | p99 ms (from buckets) |",
		"| 1000 | burst | scheduler | Bind (extension point) | - | 652 | - |",
		"| 1000 | burst | scheduler | reserve_answer | 100 | 150 | 199 |",
		"| 1000 | burst | scheduler | other_claims | 100 | 5.00 | 99.0 |",
		"| 1000 | burst | scheduler | launch | 100 | 300 | 398 |",
		"| 1000 | burst | scheduler | binding | 100 | 400 | > 400 |",
		"| 1000 | burst | broker | batch_wait | 100 | 100 | 199 |",
		"| 1000 | paced | - | no phase metrics | - | - | - |",
	)
	if strings.Contains(out, "host_ports_patch") {
		t.Errorf("a phase that recorded nothing during the bench phase has a row:\n%s", out)
	}
	if strings.Contains(out, "| stock | Bind (extension point)") || strings.Contains(out, "| burst | scheduler | Bind (extension point) | - | 350") {
		t.Errorf("the stock phase has bind phase rows:\n%s", out)
	}
}

// reportOf is the report of the one scenario sc, each run of spaces made
// one: cells are padded to their column's width.
func reportOf(sc ScenarioResult) string {
	var b bytes.Buffer
	WriteTable(&b, &Results{Scenarios: []ScenarioResult{sc}})
	return regexp.MustCompile(` +`).ReplaceAllString(b.String(), " ")
}

// lacksNone fails t for each of wants that the report out lacks.
func lacksNone(t *testing.T, out string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
