package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// schedulerPage is a kube-scheduler /metrics page's event, queue and
// PreFilter series, in the form a real one has them (lines copied from a
// run's runs/n10000/scheduler-metrics.txt, the PreFilter counters as
// plugin/mesosoffers registers them), with the counts given.
func schedulerPage(assignedUpdates, unscheduledAdds, nodeTaint, queuedAdd, forceActivate, named, wide, names int, withPreFilter bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# HELP scheduler_event_handling_duration_seconds [ALPHA] Event handling latency in seconds.
# TYPE scheduler_event_handling_duration_seconds histogram
scheduler_event_handling_duration_seconds_bucket{event="AssignedPodUpdate",le="0.0001"} %d
scheduler_event_handling_duration_seconds_bucket{event="AssignedPodUpdate",le="+Inf"} %d
scheduler_event_handling_duration_seconds_sum{event="AssignedPodUpdate"} %g
scheduler_event_handling_duration_seconds_count{event="AssignedPodUpdate"} %d
scheduler_event_handling_duration_seconds_bucket{event="NodeAdd",le="0.0001"} 10000
scheduler_event_handling_duration_seconds_bucket{event="NodeAdd",le="+Inf"} 10000
scheduler_event_handling_duration_seconds_sum{event="NodeAdd"} 0.5879179870000016
scheduler_event_handling_duration_seconds_count{event="NodeAdd"} 10000
scheduler_event_handling_duration_seconds_sum{event="UnscheduledPodAdd"} %g
scheduler_event_handling_duration_seconds_count{event="UnscheduledPodAdd"} %d
`, assignedUpdates, assignedUpdates, float64(assignedUpdates)*0.0001, assignedUpdates, float64(unscheduledAdds)*0.0005, unscheduledAdds)
	if nodeTaint > 0 {
		fmt.Fprintf(&b, "scheduler_event_handling_duration_seconds_sum{event=\"NodeUpdateNodeTaint\"} %g\nscheduler_event_handling_duration_seconds_count{event=\"NodeUpdateNodeTaint\"} %d\n", float64(nodeTaint)*0.0002, nodeTaint)
	}
	fmt.Fprintf(&b, `# HELP scheduler_queue_incoming_pods_total [STABLE] Number of pods added to scheduling queues by event and queue type.
# TYPE scheduler_queue_incoming_pods_total counter
scheduler_queue_incoming_pods_total{event="ForceActivate",queue="active"} %d
scheduler_queue_incoming_pods_total{event="UnscheduledPodAdd",queue="active"} %d
scheduler_queue_incoming_pods_total{event="UnscheduledPodAdd",queue="backoff"} 1
`, forceActivate, queuedAdd)
	if withPreFilter {
		fmt.Fprintf(&b, `# HELP k8sm_mesosoffers_prefilter_named_nodes_total [ALPHA] Node names MesosOffers' PreFilter put in NodeNames, summed over its named answers.
# TYPE k8sm_mesosoffers_prefilter_named_nodes_total counter
k8sm_mesosoffers_prefilter_named_nodes_total %d
# HELP k8sm_mesosoffers_prefilter_results_total [ALPHA] MesosOffers' PreFilter answers for pods some agent may hold: named (NodeNames set), wide (too many agents hold the pod to name), none_hold, not_narrowed.
# TYPE k8sm_mesosoffers_prefilter_results_total counter
k8sm_mesosoffers_prefilter_results_total{result="named"} %d
k8sm_mesosoffers_prefilter_results_total{result="wide"} %d
`, names, named, wide)
	}
	return b.String()
}

// apiPage is a kube-apiserver /metrics page's apiserver_request_total
// series for pods and Nodes (labels as the API server sorts them), with
// reads, a refused write, a dry run and other resources beside the
// writes that count.
func apiPage(statusPatches, bindings, nodePatches int) string {
	return fmt.Sprintf(`# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="status",verb="PATCH",version="v1"} %d
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="pods",scope="resource",subresource="binding",verb="POST",version="v1"} %d
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="resource",subresource="status",verb="PATCH",version="v1"} %d
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="status",verb="PATCH",version="v1"} 70
apiserver_request_total{code="200",component="apiserver",dry_run="All",group="",resource="pods",scope="resource",subresource="",verb="PATCH",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="LIST",version="v1"} 5000
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="",verb="WATCH",version="v1"} 9
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="PUT",version="v1"} 40000
apiserver_request_total{code="201",component="apiserver",dry_run="",group="metrics.k8s.io",resource="pods",scope="resource",subresource="",verb="POST",version="v1beta1"} 2
`, statusPatches, bindings, nodePatches)
}

// TestPhaseEvents: a phase's events are the counters' growth while it ran
// (not their totals since the scheduler started), a series that first
// appears during the phase counts from zero, the API server's writes are
// successful writes to pods and Nodes only, and nothing is made up from a
// page that could not be read.
func TestPhaseEvents(t *testing.T) {
	before := readSchedulerCounters(parsePage(t, schedulerPage(800, 400, 0, 400, 60, 0, 0, 0, false)))
	after := readSchedulerCounters(parsePage(t, schedulerPage(2800, 1400, 30, 1400, 65, 300, 700, 750, true)))
	writesBefore := readAPIWrites(parsePage(t, apiPage(100, 400, 50)))
	writesAfter := readAPIWrites(parsePage(t, apiPage(2100, 1400, 80)))

	e := phaseEvents(before, after, writesBefore, writesAfter)
	if e == nil {
		t.Fatal("no events from two readings")
	}
	want := map[string]EventCount{
		"AssignedPodUpdate":   {Count: 2000, Seconds: 0.2},
		"UnscheduledPodAdd":   {Count: 1000, Seconds: 0.5},
		"NodeUpdateNodeTaint": {Count: 30, Seconds: 0.006},
	}
	if len(e.Handled) != len(want) {
		t.Errorf("handled %v, want %v (NodeAdd did not grow)", e.Handled, want)
	}
	for ev, w := range want {
		g := e.Handled[ev]
		if g.Count != w.Count || fmt.Sprintf("%.6f", g.Seconds) != fmt.Sprintf("%.6f", w.Seconds) {
			t.Errorf("%s: %+v, want %+v", ev, g, w)
		}
	}
	if e.QueueIncoming["UnscheduledPodAdd"] != 1000 || e.QueueIncoming["ForceActivate"] != 5 || len(e.QueueIncoming) != 2 {
		t.Errorf("queued %v, want UnscheduledPodAdd 1000 (both queues summed), ForceActivate 5", e.QueueIncoming)
	}
	answers, share, names := e.PreFilterAnswers()
	if answers != 1000 || share != 0.3 || names != 2.5 {
		t.Errorf("PreFilter answers %g, named share %g, names per named %g; want 1000, 0.3, 2.5", answers, share, names)
	}
	wantWrites := map[string]float64{"pods/status PATCH": 2000, "pods/binding POST": 1000, "nodes/status PATCH": 30}
	if fmt.Sprint(e.APIWrites) != fmt.Sprint(wantWrites) {
		t.Errorf("API writes %v, want %v", e.APIWrites, wantWrites)
	}

	if got := phaseEvents(nil, after, writesBefore, writesAfter); got != nil {
		t.Errorf("from an unread start: %+v, want unknown", *got)
	}
	if got := phaseEvents(before, after, nil, writesAfter); got == nil || got.APIWrites != nil || got.Total().Count != 3030 {
		t.Errorf("with the API server's start unread: %+v, want the scheduler's events and no writes", got)
	}
}

// TestEventRows: the tables put each phase's events, writes and PreFilter
// answers per bound pod side by side, k8sm beside stock, and show a phase
// whose counters could not be read as unknown rather than as zero.
func TestEventRows(t *testing.T) {
	k8sm := &PhaseEvents{
		Handled: map[string]EventCount{
			"AssignedPodUpdate": {Count: 3000, Seconds: 0.3},
			"UnscheduledPodAdd": {Count: 1000, Seconds: 0.5},
		},
		QueueIncoming: map[string]float64{"UnscheduledPodAdd": 1000, "ForceActivate": 20},
		PreFilter:     map[string]float64{"named": 250, "wide": 750, "none_hold": 10},
		NamedNodes:    250 * 1800,
		APIWrites:     map[string]float64{"pods/status PATCH": 2000, "pods/binding POST": 1000},
	}
	stock := &PhaseEvents{
		Handled:       map[string]EventCount{"UnscheduledPodAdd": {Count: 1000, Seconds: 0.4}},
		QueueIncoming: map[string]float64{"UnscheduledPodAdd": 1000},
		APIWrites:     map[string]float64{"pods/binding POST": 1000},
	}
	sc := ScenarioResult{Scenario: Scenario{Name: "n5000", Kind: "scale", Agents: 5000}, Phases: []PhaseResult{
		{Scheduler: K8smScheduler, Mode: "burst", Pods: 1000, Bound: 1000, Events: k8sm},
		{Scheduler: StockScheduler, Mode: "burst", Pods: 1000, Bound: 1000, Events: stock},
		{Scheduler: K8smScheduler, Mode: "paced", Pods: 1000, Bound: 1000},
	}}
	out := reportOf(sc)
	lacksNone(t, out,
		"### The scheduler's events during each phase",
		"| agents | part | event | handled | handled per pod | handler µs per pod | pods queued per pod |",
		"| 5000 | k8sm burst | AssignedPodUpdate | 3000 | 3.00 | 300 | 0.000 |",
		"| 5000 | k8sm burst | ForceActivate | 0 | 0.000 | 0.000 | 0.020 |",
		"| 5000 | k8sm burst | UnscheduledPodAdd | 1000 | 1.00 | 500 | 1.00 |",
		"| 5000 | k8sm burst | all | 4000 | 4.00 | 800 | 1.02 |",
		"| 5000 | stock burst | UnscheduledPodAdd | 1000 | 1.00 | 400 | 1.00 |",
		"| 5000 | stock burst | all | 1000 | 1.00 | 400 | 1.00 |",
		"| 5000 | k8sm paced | - | not read | - | - | - |",
		"### Writes to pods and Nodes during each phase",
		"| 5000 | k8sm burst | pods/status PATCH | 2000 | 2.00 |",
		"| 5000 | k8sm burst | all | 3000 | 3.00 |",
		"| 5000 | stock burst | all | 1000 | 1.00 |",
		"| 5000 | k8sm paced | not read | - | - |",
		"### MesosOffers' PreFilter during each k8sm phase",
		"| agents | load | answers | answers per bound pod | named | wide | none_hold | not_narrowed | named share | names per named answer |",
		"| 5000 | burst | 1010 | 1.01 | 250 | 750 | 10 | 0 | 24.8% | 1800 |",
		"| 5000 | paced | not read | - | - | - | - | - | - | - |",
	)
	_, preFilter, _ := strings.Cut(out, "### MesosOffers' PreFilter")
	if n := strings.Count(preFilter, "| 5000 | burst |"); n != 1 {
		t.Errorf("%d burst rows in the PreFilter table, want k8sm's alone:\n%s", n, preFilter)
	}
}

// TestAPIWritesFromTheAPIServer: the driver reads the API server's
// /metrics through its client; an API server that does not serve them is
// unknown, not zero writes.
func TestAPIWritesFromTheAPIServer(t *testing.T) {
	serve := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || !serve {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, apiPage(7, 5, 3))
	}))
	defer srv.Close()
	kube, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	got := apiWrites(context.Background(), kube)
	if want := "map[nodes/status PATCH:3 pods/binding POST:5 pods/status PATCH:7]"; fmt.Sprint(got) != want {
		t.Errorf("writes %v, want %s", got, want)
	}
	serve = false
	if got := apiWrites(context.Background(), kube); got != nil {
		t.Errorf("from an API server that refused: %v, want unknown", got)
	}
}
