package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKubeWritesOnlyWhileLeading: both of the broker's Kubernetes clients
// (the rate-limited one and the Node mirror's) refuse writes while it does
// not lead and after its term ended, before they reach the API server; a
// standby, or a leader cut off from ZooKeeper, writes nothing.
func TestKubeWritesOnlyWhileLeading(t *testing.T) {
	var writes atomic.Int32
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			writes.Add(1)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"}}`))
	}))
	defer api.Close()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+api.URL+`"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse([]string{"--master=zk://zk:2181/mesos", "--kubeconfig=" + kubeconfig, "--grpc-bind-address=127.0.0.1:0", "--http-bind-address="}); err != nil {
		t.Fatal(err)
	}
	c, err := o.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.GRPCListener.Close()
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}
	write := func(ctx context.Context) (errs int) {
		if _, err := c.Kube.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			errs++
		}
		if _, err := c.Heartbeats.CoreV1().Pods("default").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
			errs++
		}
		return errs
	}
	ctx := context.Background()
	if _, err := c.Kube.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{}); err != nil {
		t.Errorf("a standby's read: %v", err)
	}
	if errs := write(ctx); errs != 2 || writes.Load() != 0 {
		t.Errorf("a standby's writes: %d refused, %d reached the API server; want both refused", errs, writes.Load())
	}
	term, lost := context.WithCancel(ctx)
	lctx := c.Gate.Lead(term)
	if errs := write(lctx); errs != 0 || writes.Load() != 2 {
		t.Errorf("the leader's writes: %d refused, %d reached the API server; want both through", errs, writes.Load())
	}
	lost()
	if errs := write(context.WithoutCancel(lctx)); errs != 2 || writes.Load() != 2 {
		t.Errorf("writes after the term ended: %d refused, %d reached the API server in all; want both refused", errs, writes.Load())
	}
}
