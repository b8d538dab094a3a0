package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestSummarizeNearestRank(t *testing.T) {
	var ds []time.Duration
	// 100 samples, 1..100 ms, shuffled: p50 is the 50th, p99 the 99th.
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(ds)
	want := Latency{Count: 100, P50Ms: 50, P90Ms: 90, P99Ms: 99, MaxMs: 100}
	if got != want {
		t.Errorf("Summarize(1..100 ms) = %+v, want %+v", got, want)
	}
	if got := Summarize([]time.Duration{7 * time.Millisecond}); got.P50Ms != 7 || got.P99Ms != 7 {
		t.Errorf("one sample: %+v, want every percentile 7 ms", got)
	}
	if got := Summarize(nil); got != (Latency{}) {
		t.Errorf("no samples: %+v, want zero", got)
	}
	// 10 samples: nearest rank of p99 is the 10th (the max), never beyond.
	var ten []time.Duration
	for i := 1; i <= 10; i++ {
		ten = append(ten, time.Duration(i)*time.Millisecond)
	}
	if got := Summarize(ten); got.P90Ms != 9 || got.P99Ms != 10 {
		t.Errorf("1..10 ms: p90 %v p99 %v, want 9 and 10", got.P90Ms, got.P99Ms)
	}
}

func TestTargetsVerdicts(t *testing.T) {
	if v := AtLeast("thr", 0.45, 0.9, "×"); v.Met || !strings.Contains(v.Verdict, "missed by 0.45 × (50% short)") {
		t.Errorf("AtLeast(0.45, 0.9) = %+v", v)
	}
	if v := AtLeast("thr", 0.95, 0.9, "×"); !v.Met || v.Verdict != "met" {
		t.Errorf("AtLeast(0.95, 0.9) = %+v", v)
	}
	if v := AtMost("p99", 1000, 250, "ms"); v.Met || !strings.Contains(v.Verdict, "missed by 750 ms (4.0× the goal)") {
		t.Errorf("AtMost(1000, 250) = %+v", v)
	}
	if v := AtMost("rss", 150, 200, "MiB"); !v.Met {
		t.Errorf("AtMost(150, 200) = %+v", v)
	}
}

func TestTableShowsRatiosAndMisses(t *testing.T) {
	sc := ScenarioResult{Scenario: Scenario{Name: "n1000", Kind: "scale", Agents: 1000}, Phases: []PhaseResult{
		{Scheduler: K8smScheduler, Mode: "burst", Pods: 100, Bound: 100, BoundPerSecond: 50, CreateToBound: Latency{Count: 100, P50Ms: 200, P99Ms: 400}},
		{Scheduler: StockScheduler, Mode: "burst", Pods: 100, Bound: 100, BoundPerSecond: 100, CreateToBound: Latency{Count: 100, P50Ms: 100, P99Ms: 100}},
		{Scheduler: K8smScheduler, Mode: "paced", OfferedRate: 100, Pods: 100, Bound: 100, BoundPerSecond: 90, CreateToBound: Latency{Count: 100, P50Ms: 100, P99Ms: 300}},
	}}
	res := &Results{Scenarios: []ScenarioResult{sc}}
	res.Targets = targets(res.Scenarios)
	var b bytes.Buffer
	WriteTable(&b, res)
	out := b.String()
	lacksNone(t, out,
		"| 1000   | burst | 0.50×      | 2.00×       | 4.00×       |",
		"missed by 0.4 × (44% short)",
		"missed by 50 ms (1.2× the goal)",
		"not measured: no 10,000-agent run",
		HollowNote,
	)
}
