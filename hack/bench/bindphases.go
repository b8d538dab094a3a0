package bench

import (
	"context"
	"math"
	"slices"
	"sort"
	"strconv"

	"github.com/prometheus/common/model"
	"k8s.io/component-base/metrics/testutil"
)

// Where a k8sm bind's time goes: the MesosOffers plugin's Bind and the
// broker's Launch record each of their phases in a histogram labelled by
// phase; a k8sm phase of the bench reads both before and after it ran and
// reports each phase's mean and estimated p99 over the bench phase.

const (
	// BindPhaseMetric is the plugin's histogram, on the scheduler's /metrics.
	BindPhaseMetric = "k8sm_mesosoffers_bind_phase_duration_seconds"
	// LaunchPhaseMetric is the broker's, on its /metrics.
	LaunchPhaseMetric = "k8sm_broker_launch_phase_duration_seconds"
)

// bindPhaseOrder and launchPhaseOrder are the phases in the order they run
// (plugin/mesosoffers metrics.go, broker/launch); a phase a newer build adds
// is reported after them.
var (
	bindPhaseOrder   = []string{"reserve_answer", "host_ports_patch", "other_claims", "launch", "binding"}
	launchPhaseOrder = []string{"admit", "batch_wait", "accept"}
)

// PhaseTiming is one phase of the plugin's Bind or of the broker's Launch
// during a bench phase.
type PhaseTiming struct {
	// Component is "scheduler" (the plugin's Bind) or "broker" (Launch).
	Component string  `json:"component"`
	Phase     string  `json:"phase"`
	Count     float64 `json:"count"`
	MeanMs    float64 `json:"mean_ms"`
	// P99Ms is estimated from the histogram's buckets (linear within the
	// bucket, as Prometheus's histogram_quantile); P99AboveMs is set
	// instead when the p99 lies beyond the largest finite bucket.
	P99Ms      float64 `json:"p99_ms,omitempty"`
	P99AboveMs float64 `json:"p99_above_ms,omitempty"`
}

// histo is one histogram series read from a /metrics page: its sum (s),
// count and cumulative bucket counts by upper bound (s, +Inf included).
type histo struct {
	sum, count float64
	buckets    map[float64]float64
}

// readHistograms reads every series of histogram name from samples, by the
// value of its phase label.
func readHistograms(samples testutil.Metrics, name string) map[string]histo {
	out := map[string]histo{}
	get := func(phase string) histo {
		h, ok := out[phase]
		if !ok {
			h = histo{buckets: map[float64]float64{}}
		}
		return h
	}
	for _, s := range samples[name+"_sum"] {
		ph := string(s.Metric["phase"])
		h := get(ph)
		h.sum += float64(s.Value)
		out[ph] = h
	}
	for _, s := range samples[name+"_count"] {
		ph := string(s.Metric["phase"])
		h := get(ph)
		h.count += float64(s.Value)
		out[ph] = h
	}
	for _, s := range samples[name+"_bucket"] {
		le, err := strconv.ParseFloat(string(s.Metric[model.BucketLabel]), 64)
		if err != nil {
			continue
		}
		ph := string(s.Metric["phase"])
		h := get(ph)
		h.buckets[le] += float64(s.Value)
		out[ph] = h
	}
	return out
}

// phaseHistograms reads both components' phase histograms; nil for a page
// that could not be read.
func phaseHistograms(ctx context.Context, schedWeb, brokerWeb string) map[string]map[string]histo {
	out := map[string]map[string]histo{}
	if samples, ok := scrape(ctx, schedWeb+"/metrics"); ok {
		out["scheduler"] = readHistograms(samples, BindPhaseMetric)
	}
	if samples, ok := scrape(ctx, brokerWeb+"/metrics"); ok {
		out["broker"] = readHistograms(samples, LaunchPhaseMetric)
	}
	return out
}

// phaseTimings is what each phase recorded between two readings, in the
// order the phases run, scheduler first; phases that recorded nothing
// meanwhile are left out. A component missing from after is left out; one
// missing from before (its page did not answer then) counts from zero.
func phaseTimings(before, after map[string]map[string]histo) []PhaseTiming {
	var out []PhaseTiming
	for _, comp := range []struct {
		name  string
		order []string
	}{{"scheduler", bindPhaseOrder}, {"broker", launchPhaseOrder}} {
		a := after[comp.name]
		phases := slices.Clone(comp.order)
		var extra []string
		for ph := range a {
			if !slices.Contains(comp.order, ph) {
				extra = append(extra, ph)
			}
		}
		sort.Strings(extra)
		for _, ph := range append(phases, extra...) {
			h, ok := a[ph]
			if !ok {
				continue
			}
			d := h.minus(before[comp.name][ph])
			if d.count <= 0 {
				continue
			}
			t := PhaseTiming{Component: comp.name, Phase: ph, Count: d.count, MeanMs: d.sum / d.count * 1000}
			q, above := d.quantile(0.99)
			if above {
				t.P99AboveMs = q * 1000
			} else {
				t.P99Ms = q * 1000
			}
			out = append(out, t)
		}
	}
	return out
}

// minus is h's growth since b (a zero b: since the start).
func (h histo) minus(b histo) histo {
	d := histo{sum: h.sum - b.sum, count: h.count - b.count, buckets: map[float64]float64{}}
	for le, n := range h.buckets {
		d.buckets[le] = n - b.buckets[le]
	}
	return d
}

// quantile estimates the q-quantile from the cumulative buckets: linear
// within the bucket it falls in, from 0 for the first. above reports a
// quantile beyond the largest finite bound, which it then returns.
func (h histo) quantile(q float64) (v float64, above bool) {
	bounds := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	if len(bounds) == 0 || h.count <= 0 {
		return 0, false
	}
	rank := q * h.count
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		n := h.buckets[le]
		if n >= rank {
			if math.IsInf(le, 1) {
				return lower, true
			}
			if n == below {
				return le, false
			}
			return lower + (le-lower)*(rank-below)/(n-below), false
		}
		lower, below = le, n
	}
	return lower, true
}
