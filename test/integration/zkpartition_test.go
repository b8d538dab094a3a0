//go:build integration

package integration

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/k8sm/k8sm/broker/app"
	"github.com/k8sm/k8sm/broker/leadergate"
	"github.com/k8sm/k8sm/hack/cluster/zktesting"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// TestBrokerZooKeeperPartition: two brokers, real ZooKeeper and mesos-sim.
// The leader is cut off from ZooKeeper (a proxy between it and ZooKeeper is
// severed; Mesos and the API server stay reachable, the worst case: nothing
// but ZooKeeper tells it to stop). It must stop writing to Kubernetes and
// to Mesos as soon as its connection is suspended — long before its session
// expires and the standby is elected — so that never two brokers lead; its
// writes after that are refused; the standby takes over the framework and
// its running task, and launches nothing twice.
//
// What each broker writes is seen from outside: the old leader reaches Mesos
// only through a proxy that logs its scheduler calls, and the agent's Node
// Lease, which the leader renews every second here, is watched.
func TestBrokerZooKeeperPartition(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	e := newBrokerEnv(t, ctx)
	zkProxy := zktesting.StartProxy(t, e.cfg.ZooKeeperAddr())
	mesosCalls := startCallLog(t, e.sim.MasterURL())
	lease := func(o *app.Options) { o.NodeLeaseDuration = 4 * time.Second } // renewed every second
	a := e.startBroker(ctx, "broker-a", lease, func(o *app.Options) {
		o.ZK = "zk://" + zkProxy.Addr() + "/k8sm"
		o.Master = mesosCalls.url
	})
	a.mayLoseLeadership = true
	e.waitServing(ctx, a)
	b := e.startBroker(ctx, "broker-b", lease)

	running := e.createPod(ctx, "before-partition", "")
	e.schedule(ctx, a, running)
	e.waitTask(ctx, running.UID, "TASK_RUNNING")
	if !a.cfg.Gate.Leading() || b.cfg.Gate.Leading() {
		t.Fatalf("before the partition: broker-a leads %v, broker-b leads %v; want broker-a alone", a.cfg.Gate.Leading(), b.cfg.Gate.Leading())
	}
	leaseWrites := watchLease(t, ctx, e, "agent-a")

	// Who leads, every 10 ms: never both; when broker-a stopped and
	// broker-b began.
	var mu sync.Mutex
	var both []string
	var aStopped, bLeads time.Time // first seen not leading; last seen not leading
	pollDone := make(chan struct{})
	stopPoll := make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			now := time.Now()
			la, lb := a.cfg.Gate.Leading(), b.cfg.Gate.Leading()
			mu.Lock()
			if la && lb && len(both) < 3 {
				both = append(both, now.Format("15:04:05.000"))
			}
			if !la && aStopped.IsZero() {
				aStopped = now
			}
			if !lb {
				bLeads = now
			}
			mu.Unlock()
			select {
			case <-stopPoll:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()

	cut := time.Now()
	zkProxy.Cut()
	// A write in flight when the connection broke may still land; a second
	// is far more than the suspension takes to be seen.
	quiet := cut.Add(time.Second)
	e.eventually(ctx, "broker-a to step down", func() (bool, string) {
		return !a.cfg.Gate.Leading(), "broker-a still leads"
	})
	// Fenced at once, well before its session expires (10 s): a write of
	// the old leader is refused before it reaches the API server, and it
	// no longer serves the scheduler.
	if _, err := a.cfg.Kube.CoreV1().Pods("default").Patch(ctx, running.Name, "application/merge-patch+json", []byte(`{"metadata":{"labels":{"k8sm-test":"stale"}}}`), metav1.PatchOptions{}); !errors.Is(err, leadergate.ErrNotLeader) {
		t.Errorf("a Kubernetes write of the broker cut off from ZooKeeper: %v, want it refused (%v)", err, leadergate.ErrNotLeader)
	}
	late := e.createPod(ctx, "after-partition", "")
	if _, err := a.client.Reserve(ctx, &brokerv1.ReserveRequest{
		Pod: &brokerv1.PodRef{Uid: string(late.UID), Namespace: late.Namespace, Name: late.Name}, NodeName: "agent-a",
		Demand: &brokerv1.Demand{Cpus: 0.5, MemMb: 128},
	}); err == nil {
		t.Errorf("broker-a, cut off from ZooKeeper, still reserves for the scheduler")
	}

	e.waitServing(ctx, b)
	close(stopPoll)
	<-pollDone
	mu.Lock()
	if len(both) > 0 {
		t.Errorf("both brokers led at %v", both)
	}
	standbyLed := bLeads
	t.Logf("broker-a stepped down %s after the cut, broker-b leads %s after it", aStopped.Sub(cut).Round(time.Millisecond), standbyLed.Sub(cut).Round(time.Millisecond))
	if !aStopped.Before(standbyLed) {
		t.Errorf("broker-a, cut off from ZooKeeper, stepped down only when broker-b led (%s after the cut): it must not wait for its session to expire", aStopped.Sub(cut).Round(time.Millisecond))
	}
	mu.Unlock()

	// The new leader took the framework over with its running task, and
	// schedules again.
	e.schedule(ctx, b, late)
	e.waitTask(ctx, late.UID, "TASK_RUNNING")
	// Two reconciliations of the new leader (every 2 s here): a task it
	// would launch again, or kill, shows by now.
	time.Sleep(5 * time.Second)
	for _, p := range []*corev1.Pod{running, late} {
		if n := e.liveTasks(p.UID); n != 1 {
			t.Errorf("pod %s has %d live tasks, want 1", p.Name, n)
		}
		got, err := e.kube.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil || got.Status.Phase == corev1.PodFailed {
			t.Errorf("pod %s after the failover: %v %v, want it kept", p.Name, got.Status.Phase, err)
		}
	}
	if _, fws := e.taskStates(); fws != 1 {
		t.Errorf("Mesos knows %d frameworks, want the one both brokers share", fws)
	}

	// Nothing of the old leader reached Mesos or the API server after its
	// connection was lost: no scheduler call at all, and no Lease renewal
	// until the new leader began.
	for _, at := range mesosCalls.since(quiet) {
		t.Errorf("broker-a sent a Mesos scheduler call %s after it was cut off from ZooKeeper", at.Sub(cut).Round(time.Millisecond))
	}
	for _, at := range leaseWrites() {
		if at.After(quiet) && at.Before(standbyLed) {
			t.Errorf("the agent's Lease was renewed %s after the cut, before broker-b led (%s): broker-a wrote to Kubernetes", at.Sub(cut).Round(time.Millisecond), standbyLed.Sub(cut).Round(time.Millisecond))
		}
	}
}

// liveTasks counts the tasks of pod uid that may run (staging, starting,
// running, unreachable), over every framework.
func (e *brokerEnv) liveTasks(uid types.UID) int {
	m := e.sim.Leader()
	if m == nil {
		return 0
	}
	var n int
	for _, fw := range m.State()["frameworks"].([]map[string]any) {
		ts, _ := fw["tasks"].([]map[string]any)
		for _, task := range ts {
			id, _ := task["id"].(string)
			switch task["state"] {
			case "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_UNREACHABLE":
				if taskinfo.PodUID(id) == uid {
					n++
				}
			}
		}
	}
	return n
}

// callLog is an HTTP proxy to a Mesos master that notes when each
// scheduler call (SUBSCRIBE and every call on the subscription) passed.
type callLog struct {
	url string
	mu  sync.Mutex
	at  []time.Time
}

func startCallLog(t *testing.T, master string) *callLog {
	t.Helper()
	target, err := url.Parse(master)
	if err != nil {
		t.Fatal(err)
	}
	l := &callLog{}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1 // the event stream flows as it comes
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/scheduler" {
			l.mu.Lock()
			l.at = append(l.at, time.Now())
			l.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	l.url = "http://" + lis.Addr().String()
	return l
}

func (l *callLog) since(from time.Time) []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []time.Time
	for _, at := range l.at {
		if at.After(from) {
			out = append(out, at)
		}
	}
	return out
}

// watchLease notes when each write of the named node's Lease reached the
// API server, until the test ends; the returned func lists them so far.
func watchLease(t *testing.T, ctx context.Context, e *brokerEnv, node string) func() []time.Time {
	t.Helper()
	w, err := e.kube.CoordinationV1().Leases("kube-node-lease").Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", node).String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	var mu sync.Mutex
	var at []time.Time
	go func() {
		for ev := range w.ResultChan() {
			if _, ok := ev.Object.(*coordinationv1.Lease); ok && ev.Type == watch.Modified {
				mu.Lock()
				at = append(at, time.Now())
				mu.Unlock()
			}
		}
	}()
	return func() []time.Time {
		mu.Lock()
		defer mu.Unlock()
		if len(at) == 0 {
			t.Errorf("no write of Lease %s seen at all: the watch shows nothing", node)
		}
		return append([]time.Time(nil), at...)
	}
}
