package mesosoffers

import (
	"sync"
	"time"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// The phases of Bind, in order; each one's duration is the time from the end
// of the one before (Bind's start for the first) to its own end, so that
// together they partition Bind's wall time: the microseconds of bookkeeping
// between two (the view's launch marks, an adoption's event) count in the
// later one, and only the defaults' record after the Binding is left out.
const (
	// phaseReserve ends with the broker's answer to the pod's Reserve,
	// sent from the scheduling cycle; the task pod's shaping and encoding
	// overlap it.
	phaseReserve = "reserve_answer"
	// phaseHostPorts is what the API patch recording the pod's wildcard
	// host ports took beyond the Reserve answer (it runs alongside); only
	// binds of pods with wildcard host ports have it.
	phaseHostPorts = "host_ports_patch"
	// phaseClaims waits for the broker's answers to the other pods' claims
	// on the agent, so their launches join this one's ACCEPT (zero when
	// none is in flight).
	phaseClaims = "other_claims"
	// phaseLaunch is the broker's Launch: gRPC round trip, its batch window
	// and the ACCEPT (the broker's k8sm_broker_launch_phase_duration_seconds
	// splits it).
	phaseLaunch = "launch"
	// phaseBinding is the API server's Binding.
	phaseBinding = "binding"
)

// BindPhases are the phases of Bind in order, as the metric labels them.
var BindPhases = []string{phaseReserve, phaseHostPorts, phaseClaims, phaseLaunch, phaseBinding}

// bindPhaseDuration tells where Bind's time goes: the scheduler's own
// extension point metric has Bind's total only.
var bindPhaseDuration = metrics.NewHistogramVec(&metrics.HistogramOpts{
	Namespace: "k8sm",
	Subsystem: "mesosoffers",
	Name:      "bind_phase_duration_seconds",
	Help:      "Duration of each phase of the MesosOffers plugin's Bind (reserve_answer, host_ports_patch, other_claims, launch, binding).",
	// 0.1 ms to ~6.5 s: in-process phases take microseconds, a burst's
	// API round trips hundreds of milliseconds.
	Buckets:        metrics.ExponentialBuckets(0.0001, 2, 17),
	StabilityLevel: metrics.ALPHA,
}, []string{"phase"})

// PreFilter's outcomes for a pod some agent may hold, as the metric labels
// them.
const (
	// preFilterNamed: NodeNames named the agents that hold the pod.
	preFilterNamed = "named"
	// preFilterWide: more than maxNarrowed agents hold it; nothing named.
	preFilterWide = "wide"
	// preFilterNoneHold: no agent holds it now; nothing named, Filter
	// says per node what is short.
	preFilterNoneHold = "none_hold"
	// preFilterNotNarrowed: a pod that failed before, or may preempt on
	// (about) every node; nothing named.
	preFilterNotNarrowed = "not_narrowed"
)

// preFilterResults and preFilterNamedNodes say how many attempts paid the
// scheduler's per-name costs (its clone of NodeNames and a look-up per
// name, which its PreFilter metric and the CPU per pod include) and for
// how many names: the real 5,000-agent run's PreFilter mean could not be
// split between named attempts and others (#16).
var (
	preFilterResults = metrics.NewCounterVec(&metrics.CounterOpts{
		Namespace:      "k8sm",
		Subsystem:      "mesosoffers",
		Name:           "prefilter_results_total",
		Help:           "MesosOffers' PreFilter answers for pods some agent may hold: named (NodeNames set), wide (too many agents hold the pod to name), none_hold, not_narrowed.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"result"})
	preFilterNamedNodes = metrics.NewCounter(&metrics.CounterOpts{
		Namespace:      "k8sm",
		Subsystem:      "mesosoffers",
		Name:           "prefilter_named_nodes_total",
		Help:           "Node names MesosOffers' PreFilter put in NodeNames, summed over its named answers.",
		StabilityLevel: metrics.ALPHA,
	})
)

var registerOnce sync.Once

// RegisterMetrics adds the plugin's metrics to the legacy registry, which
// the scheduler's /metrics serves (idempotent). New calls it; tests call it
// before any test runs, since registering creates the lazy collectors and
// must not race with a recording goroutine.
func RegisterMetrics() {
	registerOnce.Do(func() { legacyregistry.MustRegister(bindPhaseDuration, preFilterResults, preFilterNamedNodes) })
}

// phaseClock times Bind's consecutive phases.
type phaseClock struct{ last time.Time }

func startPhases() *phaseClock { return &phaseClock{last: time.Now()} }

// end records the phase that ends now and starts the next.
func (c *phaseClock) end(phase string) {
	now := time.Now()
	bindPhaseDuration.WithLabelValues(phase).Observe(now.Sub(c.last).Seconds())
	c.last = now
}
