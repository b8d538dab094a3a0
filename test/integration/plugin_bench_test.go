//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/hack/cluster"
	"github.com/k8sm/k8sm/pkg/podresources"
)

const (
	benchAgents = 1000
	benchPods   = 300 // per iteration
)

// BenchmarkScheduler1000Agents runs the k8sm kube-scheduler in-process
// against a real API server with 1,000 agent Nodes whose offers come from the
// real broker API, and reports pods/s for the mesos-scheduler profile next to
// a profile of the same scheduler with the stock plugins (DefaultBinder,
// TaintToleration) on the same Nodes. Pods tolerate every taint so that node
// health, which nothing maintains here, does not matter.
//
//	K8SM_BIN_DIR=$PWD/_output/bin go test -tags integration -run '^$' \
//	    -bench Scheduler1000Agents -benchtime 3x -timeout 30m ./test/integration/
func BenchmarkScheduler1000Agents(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg, err := cluster.TestConfig(filepath.Join(b.TempDir(), "state"), benchBinDir(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.Containerd = false
	cfg.Agents = 0 // control plane only: the benchmark runs its own broker
	cl, err := cluster.Up(ctx, cfg)
	b.Cleanup(func() { _ = cluster.Down(context.Background(), cfg.StateDir) })
	if err != nil {
		b.Fatalf("bringing the cluster up: %v", err)
	}
	_ = cl
	// The cluster's own client is throttled to a few requests a second;
	// 1,000 Nodes and hundreds of pods per round need more.
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.PKI().Kubeconfig("admin"))
	if err != nil {
		b.Fatal(err)
	}
	rc.QPS, rc.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		b.Fatal(err)
	}
	br := startTestBroker(b, "127.0.0.1:0")
	br.launcher.reoffer = br.cache

	work := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				name := fmt.Sprintf("agent-%04d", i)
				createBenchNode(ctx, b, cs, name)
				br.offer(fmt.Sprintf("a%04d", i), name, 8, 32768, podresources.Range{Begin: 31000, End: 31999})
			}
		}()
	}
	for i := range benchAgents {
		work <- i
	}
	close(work)
	wg.Wait()

	config := schedulerConfig(b, br.addr, cfg.PKI().Kubeconfig("admin"), func(c map[string]any) {
		profiles := c["profiles"].([]any)
		c["profiles"] = append(profiles, map[string]any{"schedulerName": "stock-scheduler"})
	})
	startScheduler(ctx, b, "--config="+config)

	for _, p := range []struct{ name, scheduler string }{{"MesosOffers", "mesos-scheduler"}, {"DefaultBinder", "stock-scheduler"}} {
		b.Run(p.name, func(b *testing.B) {
			var scheduled int
			var busy time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				createBenchPods(ctx, b, cs, p.scheduler, fmt.Sprintf("%s-%d", p.scheduler, i), benchPods)
				waitAllBound(ctx, b, cs, "bench="+p.scheduler, benchPods)
				busy += time.Since(start)
				scheduled += benchPods
				b.StopTimer()
				if err := cs.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}, metav1.ListOptions{LabelSelector: "bench=" + p.scheduler}); err != nil {
					b.Fatal(err)
				}
				waitNoPods(ctx, b, cs, "bench="+p.scheduler)
				b.StartTimer()
			}
			b.ReportMetric(float64(scheduled)/busy.Seconds(), "pods/s")
		})
	}

	// How long a pod that waited for offers takes to be bound once a
	// fitting offer arrives (the issue asks for under 100 ms).
	b.Run("BoundAfterOffer", func(b *testing.B) {
		var total time.Duration
		var each []time.Duration
		for range b.N {
			// The harness runs this more than once; names and ports must not repeat.
			i := int(waits.Add(1))
			port := uint64(40000 + i)
			pod := benchPod("mesos-scheduler", fmt.Sprintf("waits-%d", i))
			pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: int32(port)}}
			w, err := cs.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", pod.Name).String()})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			// Wait until the scheduler has turned it away.
			for ev := range w.ResultChan() {
				if p, ok := ev.Object.(*corev1.Pod); ok && podUnschedulable(p) {
					break
				}
			}
			offered := time.Now()
			br.offer(fmt.Sprintf("a%04d", i%benchAgents), fmt.Sprintf("agent-%04d", i%benchAgents), 0, 0, podresources.Range{Begin: port, End: port})
			for ev := range w.ResultChan() {
				if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Modified && p.Spec.NodeName != "" {
					break
				}
			}
			took := time.Since(offered)
			total += took
			each = append(each, took)
			w.Stop()
		}
		slices.Sort(each)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(ms(total)/float64(b.N), "ms-to-bound")
		// The mean hides how the wait spreads; on a shared machine one slow
		// round can dominate it.
		b.ReportMetric(ms(each[len(each)/2]), "p50-ms")
		b.ReportMetric(ms(each[len(each)-1]), "max-ms")
	})
}

var waits atomic.Int64

func benchBinDir(b *testing.B) string {
	d := os.Getenv("K8SM_BIN_DIR")
	if d == "" {
		b.Skip("K8SM_BIN_DIR is not set: build the binaries (make build) and point it at _output/bin")
	}
	return d
}

func podUnschedulable(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
			return true
		}
	}
	return false
}

func createBenchNode(ctx context.Context, b testing.TB, cs kubernetes.Interface, name string) {
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("500")}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		b.Errorf("creating node %s: %v", name, err)
		return
	}
	if err := setNodeReady(ctx, cs, name, capacity); err != nil {
		b.Errorf("node status %s: %v", name, err)
	}
}

func benchPod(scheduler, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"bench": scheduler}},
		Spec: corev1.PodSpec{
			SchedulerName: scheduler,
			Tolerations:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{Name: "c", Image: cluster.WebappImage,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}}}},
		},
	}
}

func createBenchPods(ctx context.Context, b *testing.B, cs kubernetes.Interface, scheduler, prefix string, n int) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := cs.CoreV1().Pods("default").Create(ctx, benchPod(scheduler, fmt.Sprintf("%s-%d", prefix, i)), metav1.CreateOptions{}); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
}

func waitAllBound(ctx context.Context, b *testing.B, cs kubernetes.Interface, selector string, n int) {
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: "0"})
		if err != nil {
			return false, err
		}
		bound := 0
		for _, p := range l.Items {
			if p.Spec.NodeName != "" {
				bound++
			}
		}
		return bound == n, nil
	})
	if err != nil {
		b.Fatalf("pods %s not all bound: %v", selector, err)
	}
}

func waitNoPods(ctx context.Context, b *testing.B, cs kubernetes.Interface, selector string) {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
		return err == nil && len(l.Items) == 0, err
	})
	if err != nil {
		b.Fatal(err)
	}
}
