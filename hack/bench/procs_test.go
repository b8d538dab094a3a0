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
