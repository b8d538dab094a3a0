package mesosoffers

import (
	"testing"

	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"
)

// preFilterCount is the scheduler's /metrics count of PreFilter answers
// of result.
func preFilterCount(t *testing.T, result string) float64 {
	t.Helper()
	v, err := testutil.GetCounterMetricValue(preFilterResults.WithLabelValues(result))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func namedNodesCount(t *testing.T) float64 {
	t.Helper()
	v, err := testutil.GetCounterMetricValue(preFilterNamedNodes)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const bindPhaseMetric = "k8sm_mesosoffers_bind_phase_duration_seconds"

// bindPhaseCounts reads, from the registry /metrics serves, how many
// durations each phase of Bind has recorded.
func bindPhaseCounts(t *testing.T) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, ph := range BindPhases {
		vec, err := testutil.GetHistogramVecFromGatherer(legacyregistry.DefaultGatherer, bindPhaseMetric, map[string]string{"phase": ph})
		if err != nil {
			// A phase not observed yet has no series.
			continue
		}
		out[ph] = vec.GetAggregatedSampleCount()
	}
	return out
}
