package bench

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
)

// Latency summarizes a set of durations. Percentiles use the nearest-rank
// method: p99 of 100 samples is the 99th smallest, a value that was really
// observed, never an interpolation between two.
type Latency struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P90Ms float64 `json:"p90_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// Summarize returns the percentiles of ds (which it sorts).
func Summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	ms := func(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Millisecond)*100) / 100 }
	return Latency{
		Count: len(ds),
		P50Ms: ms(Percentile(ds, 50)),
		P90Ms: ms(Percentile(ds, 90)),
		P99Ms: ms(Percentile(ds, 99)),
		MaxMs: ms(ds[len(ds)-1]),
	}
}

// Percentile is the nearest-rank p-th percentile of sorted ds.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// Ratio is a/b, or 0 when b is 0 (nothing to compare with).
func Ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*1000) / 1000
}

// Target is one of the goals and what the run achieved.
type Target struct {
	Name     string  `json:"name"`
	Goal     string  `json:"goal"`
	Achieved float64 `json:"achieved"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
	// Verdict says "met" or by how much it was missed, for people.
	Verdict string `json:"verdict"`
	// Measured is false when the run did not produce the figure (a size
	// skipped, a phase that failed).
	Measured bool `json:"measured"`
}

// AtLeast judges a figure that must reach goal (a throughput ratio).
func AtLeast(name string, achieved, goal float64, unit string) Target {
	t := Target{Name: name, Goal: fmt.Sprintf("≥ %g %s", goal, unit), Achieved: achieved, Unit: unit, Measured: true}
	t.Met = achieved >= goal
	if t.Met {
		t.Verdict = "met"
	} else {
		t.Verdict = fmt.Sprintf("missed by %s %s (%.0f%% short)", trim(goal-achieved), unit, (goal-achieved)/goal*100)
	}
	return t
}

// AtMost judges a figure that must stay under goal (a latency, a size).
func AtMost(name string, achieved, goal float64, unit string) Target {
	t := Target{Name: name, Goal: fmt.Sprintf("≤ %g %s", goal, unit), Achieved: achieved, Unit: unit, Measured: true}
	t.Met = achieved <= goal
	if t.Met {
		t.Verdict = "met"
	} else {
		t.Verdict = fmt.Sprintf("missed by %s %s (%.1f× the goal)", trim(achieved-goal), unit, achieved/goal)
	}
	return t
}

// NotMeasured is a target the run had no figure for.
func NotMeasured(name, goal, why string) Target {
	return Target{Name: name, Goal: goal, Verdict: "not measured: " + why}
}

func trim(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64)
}

func timeDuration(d Duration) time.Duration { return time.Duration(d) }
