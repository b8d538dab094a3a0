package mesosoffers

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// TestLaunchAnswerLostRetried: the broker launches the pod but its answer
// is lost (the connection breaks: Unavailable). Bind asks again for the
// same reservation and gets the same task — no failed Bind, no second task
// — and binds the pod as it.
func TestLaunchAnswerLostRetried(t *testing.T) {
	var launches atomic.Int32
	b := startBroker(t, "127.0.0.1:0", grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if strings.HasSuffix(info.FullMethod, "/Launch") && launches.Add(1) == 1 {
			return nil, status.Error(codes.Unavailable, "connection reset by peer")
		}
		return resp, err
	}))
	pl, h := newPlugin(t, b.addr, "")
	e := &env{broker: b, handle: h, pl: pl}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	e.offer(t, mkOffer("a1", "n1", res(2, 4096)))
	bindings := bindingsOf(e.handle, nil)
	ctx := context.Background()
	pod := mkPod("1", "64Mi")
	if _, err := e.handle.client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	state, _, _ := e.schedule(t, pod, "n1")
	if st := e.pl.Reserve(ctx, state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Reserve: %v", st)
	}
	if st := e.pl.Bind(ctx, state, pod, "n1"); !st.IsSuccess() {
		t.Fatalf("Bind after a Launch whose answer was lost: %v, want bound", st)
	}
	launched, _ := e.broker.launcher.snapshot()
	if len(launched) != 1 || launches.Load() != 2 {
		t.Fatalf("%d tasks launched in %d Launch calls, want one task and the call retried once", len(launched), launches.Load())
	}
	if got, task := bindings(), taskinfo.TaskID(pod.UID, e.broker.launcher.tasks[0].ID); got[pod.Name+"/task"] != task {
		t.Errorf("bindings %v, want %s bound as task %s", got, pod.Name, task)
	}
}
