package app

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestReadyzChecks: /readyz fails until the broker's informers are in sync
// and it holds a Mesos subscription; ?verbose names every check and which
// failed, each check has its own path, and /healthz and /livez answer while
// the broker is not ready.
func TestReadyzChecks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var r readiness
	srv := httptest.NewServer(newHTTPHandler(ctx, &r, false))
	defer srv.Close()

	code, body := get(t, srv.URL+"/readyz?verbose")
	if code != http.StatusInternalServerError { // what every component's healthz answers
		t.Errorf("/readyz of a broker neither synced nor subscribed answered %d, want 500", code)
	}
	for _, want := range []string{"[+]shutdown ok", "[-]informer-sync failed", "[-]mesos-subscription failed"} {
		if !strings.Contains(body, want) {
			t.Errorf("/readyz?verbose does not say %q:\n%s", want, body)
		}
	}
	for _, path := range []string{"/healthz", "/livez", "/healthz/ping"} {
		if code, body := get(t, srv.URL+path); code != http.StatusOK {
			t.Errorf("%s answered %d %q, want 200", path, code, body)
		}
	}

	synced := func() bool { return true }
	r.informersSynced.Store(&synced)
	if code, _ := get(t, srv.URL+"/readyz/informer-sync"); code != http.StatusOK {
		t.Errorf("/readyz/informer-sync of a synced broker answered %d", code)
	}
	if code, body := get(t, srv.URL+"/readyz/mesos-subscription"); code == http.StatusOK || !strings.Contains(body, "not subscribed to Mesos") {
		t.Errorf("/readyz/mesos-subscription of an unsubscribed broker answered %d %q", code, body)
	}
	refused := func() error { return errors.New("Mesos refused the framework's credentials") }
	r.subscribeError.Store(&refused)
	if code, body := get(t, srv.URL+"/readyz/mesos-subscription"); code == http.StatusOK || !strings.Contains(body, "refused the framework's credentials") {
		t.Errorf("/readyz/mesos-subscription of a broker whose subscription was refused answered %d %q, want the reason", code, body)
	}
	r.subscribed.Store(true)
	code, body = get(t, srv.URL+"/readyz?verbose")
	if code != http.StatusOK || !strings.Contains(body, "[+]informer-sync ok") || !strings.Contains(body, "[+]mesos-subscription ok") {
		t.Errorf("/readyz?verbose of a synced, subscribed broker answered %d:\n%s", code, body)
	}
	cancel()
	if code, body := get(t, srv.URL+"/readyz/shutdown"); code == http.StatusOK {
		t.Errorf("/readyz/shutdown of a broker shutting down answered %d %q", code, body)
	}
}

// TestMetricsServeClientGo: /metrics shows the work queues' depth and
// latencies and the Kubernetes client's requests.
func TestMetricsServeClientGo(t *testing.T) {
	srv := httptest.NewServer(newHTTPHandler(context.Background(), &readiness{}, false))
	defer srv.Close()

	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "k8sm_test"})
	defer q.ShutDown()
	q.Add("x")
	api := httptest.NewServer(http.NotFoundHandler())
	defer api.Close()
	kube := kubernetes.NewForConfigOrDie(&rest.Config{Host: api.URL})
	_, _ = kube.CoreV1().Pods("default").Get(context.Background(), "p", metav1.GetOptions{})

	_, body := get(t, srv.URL+"/metrics")
	for _, want := range []string{`workqueue_depth{name="k8sm_test"} 1`, `workqueue_adds_total{name="k8sm_test"} 1`, `rest_client_requests_total{code="404",host=`, "rest_client_request_duration_seconds_bucket"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
}
