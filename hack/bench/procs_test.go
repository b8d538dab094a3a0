package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMetricValue: a sample is found by name and some of its labels,
// whatever order the page prints them in; a histogram's series and a name
// that only starts the same are not taken for it.
func TestMetricValue(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `# HELP k8sm_broker_offers_received_total Offers received from Mesos.
# TYPE k8sm_broker_offers_received_total counter
k8sm_broker_offers_received_total 42
# HELP k8sm_broker_offers_received_total_extra Not the same metric.
# TYPE k8sm_broker_offers_received_total_extra counter
k8sm_broker_offers_received_total_extra 7
# HELP scheduler_schedule_attempts_total Attempts.
# TYPE scheduler_schedule_attempts_total counter
scheduler_schedule_attempts_total{result="scheduled",profile="mesos-scheduler"} 3
scheduler_schedule_attempts_total{profile="mesos-scheduler",result="unschedulable"} 5
scheduler_schedule_attempts_total{profile="default-scheduler",result="scheduled"} 11
`)
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
		found  bool
	}{
		{"k8sm_broker_offers_received_total", nil, 42, true},
		{"scheduler_schedule_attempts_total", map[string]string{"profile": "mesos-scheduler", "result": "scheduled"}, 3, true},
		{"scheduler_schedule_attempts_total", map[string]string{"profile": "mesos-scheduler", "result": "unschedulable"}, 5, true},
		{"scheduler_schedule_attempts_total", map[string]string{"profile": "mesos-scheduler", "result": "error"}, 0, false},
		{"k8sm_broker_offers", nil, 0, false},
	} {
		got, ok := metricValue(ctx, srv.URL, tc.name, tc.labels)
		if got != tc.want || ok != tc.found {
			t.Errorf("%s%v = %v, %v; want %v, %v", tc.name, tc.labels, got, ok, tc.want, tc.found)
		}
	}
}

// TestCPUByPartRows: the table splits the broker's and the scheduler's CPU
// by part of the run, per bound pod during a phase, and shows a part whose
// CPU could not be read as unknown rather than as zero.
func TestCPUByPartRows(t *testing.T) {
	sc := ScenarioResult{
		Scenario:        Scenario{Name: "n1000", Kind: "scale", Agents: 1000},
		BeforePhasesCPU: &PhaseCPU{BrokerSeconds: 6.5, SchedulerSeconds: 2.25},
		Phases: []PhaseResult{
			{Scheduler: K8smScheduler, Mode: "burst", Pods: 1000, Bound: 1000,
				CPU:       cpuSince(&PhaseCPU{BrokerSeconds: 6.5, SchedulerSeconds: 2.25}, &PhaseCPU{BrokerSeconds: 9.0, SchedulerSeconds: 5.75}),
				DeleteCPU: &PhaseCPU{BrokerSeconds: 1.5, SchedulerSeconds: 0.5}},
			{Scheduler: StockScheduler, Mode: "burst", Pods: 1000, Bound: 500, CPU: &PhaseCPU{BrokerSeconds: 0.5, SchedulerSeconds: 2}},
		},
		BrokerProc:    ProcStats{CPUSeconds: 18.2},
		SchedulerProc: ProcStats{CPUSeconds: 18.7},
	}
	out := reportOf(sc)
	lacksNone(t, out,
		"### Broker and scheduler CPU by part of the run",
		"| agents | part | broker CPU s | scheduler CPU s | broker ms per pod | scheduler ms per pod |",
		"| 1000 | before the first phase (Nodes, broker alone, start) | 6.50 | 2.25 | - | - |",
		"| 1000 | k8sm burst | 2.50 | 3.50 | 2.50 | 3.50 |",
		"| 1000 | k8sm burst: deleting its pods | 1.50 | 0.50 | - | - |",
		"| 1000 | stock burst | 0.50 | 2.00 | 1.00 | 4.00 |",
		"| 1000 | stock burst: deleting its pods | - | - | - | - |",
		"| 1000 | whole run | 18.20 | 18.70 | - | - |",
	)
	if c := cpuSince(nil, &PhaseCPU{BrokerSeconds: 1}); c != nil {
		t.Errorf("CPU since an unread start: %+v, want unknown", *c)
	}
}
