package bench

import (
	"context"
	"sort"
	"strings"

	"k8s.io/client-go/kubernetes"
	"k8s.io/component-base/metrics/testutil"
)

// What a phase made the scheduler handle besides its attempts (#16): the
// real 5,000-agent run's scheduler spent more CPU per bound pod in k8sm's
// phase than in the stock one, with Filter and Score ~2× stock's wall time,
// which the in-process serial cycle does not reproduce. Two explanations
// are read here, per phase, from counters read before and after it:
// MesosOffers' PreFilter naming nodes (the scheduler's per-name costs), and
// the events the scheduler's informers hand it (k8sm's pods get status
// updates from the broker, the stock phase's pods bind to Nodes nobody
// runs), each of which costs it event handling and queueing work.

const (
	// EventHandlingMetric is kube-scheduler's histogram of its informer
	// event handlers, labelled by event ("AssignedPodUpdate",
	// "UnscheduledPodAdd", "UpdateNodeTaint", ...). Its count is how many
	// events the scheduler handled; a Node update that changes nothing the
	// scheduler schedules on is handled (the cache) but not recorded.
	EventHandlingMetric = "scheduler_event_handling_duration_seconds"
	// QueueIncomingMetric counts pods put in a scheduling queue, by queue
	// and the event that put them there.
	QueueIncomingMetric = "scheduler_queue_incoming_pods_total"
	// PreFilterResultsMetric and PreFilterNamedNodesMetric are
	// MesosOffers' PreFilter answers by result and the node names its
	// named answers gave (plugin/mesosoffers metrics.go).
	PreFilterResultsMetric    = "k8sm_mesosoffers_prefilter_results_total"
	PreFilterNamedNodesMetric = "k8sm_mesosoffers_prefilter_named_nodes_total"
	// APIRequestsMetric is the API server's count of requests served, by
	// verb, resource, subresource and code.
	APIRequestsMetric = "apiserver_request_total"
)

// preFilterResultOrder is the order of PreFilter's results in the report
// (a result a newer plugin adds follows them).
var preFilterResultOrder = []string{"named", "wide", "none_hold", "not_narrowed"}

// EventCount is how many events of one label the scheduler handled and
// the time its handlers took for them.
type EventCount struct {
	Count   float64 `json:"count"`
	Seconds float64 `json:"seconds"`
}

// PhaseEvents is what the scheduler handled and the API server wrote
// during one phase: the growth of each counter over the phase (a series
// created during the phase counts from zero).
type PhaseEvents struct {
	// Handled is scheduler_event_handling_duration_seconds by event.
	// The metric has no profile label: it covers every pod and Node the
	// scheduler's informers saw during the phase.
	Handled map[string]EventCount `json:"handled,omitempty"`
	// QueueIncoming is scheduler_queue_incoming_pods_total by event,
	// summed over the queues.
	QueueIncoming map[string]float64 `json:"queue_incoming,omitempty"`
	// PreFilter is MesosOffers' PreFilter answers by result, NamedNodes the
	// names summed over its named answers (nothing during a stock phase).
	PreFilter  map[string]float64 `json:"prefilter,omitempty"`
	NamedNodes float64            `json:"prefilter_named_nodes,omitempty"`
	// APIWrites is the API server's successful writes to pods and Nodes
	// (every client's) by "resource[/subresource] VERB": each one that
	// changed the object is an event for the scheduler's informers,
	// including the Node updates the event metric leaves out. Nil when
	// the API server's metrics could not be read.
	APIWrites map[string]float64 `json:"api_writes,omitempty"`
}

// counterReading is one reading of the counters PhaseEvents is made of.
type counterReading struct {
	handled    map[string]EventCount
	incoming   map[string]float64
	prefilter  map[string]float64
	namedNodes float64
}

// readSchedulerCounters reads a scheduler /metrics page.
func readSchedulerCounters(samples testutil.Metrics) *counterReading {
	r := &counterReading{handled: map[string]EventCount{}, incoming: map[string]float64{}, prefilter: map[string]float64{}}
	for _, s := range samples[EventHandlingMetric+"_count"] {
		ev := string(s.Metric["event"])
		c := r.handled[ev]
		c.Count += float64(s.Value)
		r.handled[ev] = c
	}
	for _, s := range samples[EventHandlingMetric+"_sum"] {
		ev := string(s.Metric["event"])
		c := r.handled[ev]
		c.Seconds += float64(s.Value)
		r.handled[ev] = c
	}
	for _, s := range samples[QueueIncomingMetric] {
		r.incoming[string(s.Metric["event"])] += float64(s.Value)
	}
	for _, s := range samples[PreFilterResultsMetric] {
		r.prefilter[string(s.Metric["result"])] += float64(s.Value)
	}
	for _, s := range samples[PreFilterNamedNodesMetric] {
		r.namedNodes += float64(s.Value)
	}
	return r
}

// readAPIWrites reads an API server /metrics page: its successful
// requests that write pods or Nodes.
func readAPIWrites(samples testutil.Metrics) map[string]float64 {
	out := map[string]float64{}
	for _, s := range samples[APIRequestsMetric] {
		res := string(s.Metric["resource"])
		if (res != "pods" && res != "nodes") || string(s.Metric["group"]) != "" {
			continue
		}
		switch string(s.Metric["verb"]) {
		case "GET", "LIST", "WATCH", "WATCHLIST", "CONNECT":
			continue
		}
		if !strings.HasPrefix(string(s.Metric["code"]), "2") || string(s.Metric["dry_run"]) != "" {
			continue
		}
		key := res
		if sub := string(s.Metric["subresource"]); sub != "" {
			key += "/" + sub
		}
		out[key+" "+string(s.Metric["verb"])] += float64(s.Value)
	}
	return out
}

// phaseEvents is the growth of every counter from before to after; nil
// when either scheduler reading is missing (counters since the scheduler
// started are no phase's). The API writes are left out likewise.
func phaseEvents(before, after *counterReading, writesBefore, writesAfter map[string]float64) *PhaseEvents {
	if before == nil || after == nil {
		return nil
	}
	e := &PhaseEvents{Handled: map[string]EventCount{}, QueueIncoming: map[string]float64{}, PreFilter: map[string]float64{}}
	for ev, a := range after.handled {
		b := before.handled[ev]
		if n := a.Count - b.Count; n > 0 {
			e.Handled[ev] = EventCount{Count: n, Seconds: a.Seconds - b.Seconds}
		}
	}
	growth(e.QueueIncoming, before.incoming, after.incoming)
	growth(e.PreFilter, before.prefilter, after.prefilter)
	e.NamedNodes = after.namedNodes - before.namedNodes
	if writesBefore != nil && writesAfter != nil {
		e.APIWrites = map[string]float64{}
		growth(e.APIWrites, writesBefore, writesAfter)
	}
	return e
}

// growth puts in out each series of after that grew since before.
func growth(out, before, after map[string]float64) {
	for k, a := range after {
		if d := a - before[k]; d > 0 {
			out[k] = d
		}
	}
}

// schedulerCounters reads the scheduler's counters; nil if it did not answer.
func schedulerCounters(ctx context.Context, schedWeb string) *counterReading {
	samples, ok := scrape(ctx, schedWeb+"/metrics")
	if !ok {
		return nil
	}
	return readSchedulerCounters(samples)
}

// apiWrites reads the API server's writes to pods and Nodes through the
// driver's admin client; nil if it could not.
func apiWrites(ctx context.Context, kube kubernetes.Interface) map[string]float64 {
	page, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").SetHeader("Accept", "text/plain").DoRaw(ctx)
	if err != nil {
		return nil
	}
	samples := testutil.NewMetrics()
	if err := testutil.ParseMetrics(string(page), &samples); err != nil {
		return nil
	}
	return readAPIWrites(samples)
}

// Total is every event the scheduler handled.
func (e *PhaseEvents) Total() EventCount {
	var t EventCount
	for _, c := range e.Handled {
		t.Count += c.Count
		t.Seconds += c.Seconds
	}
	return t
}

// PreFilterAnswers is how many answers PreFilter counted, NamedShare the
// share of them that named nodes and NamesPerNamed the mean names per
// named answer (0 when none).
func (e *PhaseEvents) PreFilterAnswers() (answers, namedShare, namesPerNamed float64) {
	for _, v := range e.PreFilter {
		answers += v
	}
	if answers > 0 {
		namedShare = e.PreFilter["named"] / answers
	}
	if n := e.PreFilter["named"]; n > 0 {
		namesPerNamed = e.NamedNodes / n
	}
	return answers, namedShare, namesPerNamed
}

// sortedKeys are m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
