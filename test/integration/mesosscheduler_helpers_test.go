//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/broker/grpcserver"
	"github.com/k8sm/k8sm/broker/launch"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/manifests"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	"github.com/k8sm/k8sm/plugin/mesosoffers"
)

// testBroker is the real broker gRPC server and offer cache; only its Mesos
// side (the Launcher) is a recording stand-in.
type testBroker struct {
	cache    *offers.Cache
	launcher *recordingLauncher
	g        *grpc.Server
	addr     string
}

type recordingLauncher struct {
	launched atomic.Int64
	pods     chan *corev1.Pod
	// reoffer, when set, gets what an ACCEPT left unused as a new offer at
	// once, as Mesos re-offers declined resources to the only framework.
	reoffer *offers.Cache
}

func (l *recordingLauncher) Launch(_ context.Context, launch *offers.Launch, pods map[string]taskinfo.PodData) error {
	if l.reoffer != nil && len(launch.Remainder) > 0 {
		l.reoffer.Add(mesos.Offer{
			ID:        mesos.OfferID{Value: fmt.Sprintf("offer-%d", offerSeq.Add(1))},
			AgentID:   mesos.AgentID{Value: launch.AgentID},
			Hostname:  launch.Hostname,
			Resources: launch.Remainder,
		})
	}
	for _, d := range pods {
		l.launched.Add(1)
		var p corev1.Pod
		if err := json.Unmarshal(d.JSON, &p); err != nil {
			return fmt.Errorf("task data of pod %s: %w", d.Ref, err)
		}
		select {
		case l.pods <- &p:
		default:
		}
	}
	return nil
}

func (l *recordingLauncher) Kill(context.Context, string, string) error { return nil }
func (l *recordingLauncher) PodTasks(types.UID) []string                { return nil }
func (l *recordingLauncher) TaskAgent(string) string                    { return "" }
func (l *recordingLauncher) Settle(context.Context, string, []string) (map[string]bool, error) {
	return nil, nil
}

func startTestBroker(t testing.TB, addr string) *testBroker {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBroker{cache: offers.New(offers.Config{}), launcher: &recordingLauncher{pods: make(chan *corev1.Pod, 10000)}, addr: lis.Addr().String()}
	s := grpcserver.New(b.cache, launch.New(b.cache, b.launcher, launch.Options{BatchWindow: 5 * time.Millisecond}))
	s.SetServing(true)
	b.g = grpc.NewServer()
	s.Register(b.g)
	go func() { _ = b.g.Serve(lis) }()
	t.Cleanup(b.g.Stop)
	return b
}

var offerSeq atomic.Int64

func (b *testBroker) offer(agentID, host string, cpus, memMB float64, ports ...podresources.Range) {
	r := podresources.Resources{
		Scalars: podresources.Scalars{CPUs: podresources.MilliFromFloat(cpus), MemMB: podresources.MilliFromFloat(memMB), DiskMB: 10240},
		Ports:   podresources.NewRanges(ports...),
	}
	b.cache.Add(mesos.Offer{
		ID:        mesos.OfferID{Value: fmt.Sprintf("offer-%d", offerSeq.Add(1))},
		AgentID:   mesos.AgentID{Value: agentID},
		Hostname:  host,
		Resources: podresources.ToMesos(r, "*"),
	})
}

// createAgentNode creates the Node the broker's node mirror would create for
// an agent: named after the hostname, attributes as labels, the agent taint,
// Ready, with a Lease renewed until ctx ends so that the node lifecycle
// controller keeps it Ready.
func createAgentNode(ctx context.Context, t testing.TB, cs kubernetes.Interface, name string, attrs map[string]string) {
	t.Helper()
	labels := map[string]string{corev1.LabelHostname: name}
	for k, v := range attrs {
		labels["k8sm.io/attribute-"+k] = v
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: taskinfo.AgentTaintKey, Effect: corev1.TaintEffectNoSchedule}}},
	}
	_, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating node %s: %v", name, err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi"), corev1.ResourcePods: resource.MustParse("500"),
	}
	if err := setNodeReady(ctx, cs, name, capacity); err != nil {
		t.Fatalf("setting status of node %s: %v", name, err)
	}
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To(name), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &metav1.MicroTime{Time: time.Now()}},
	}
	if _, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating lease of node %s: %v", name, err)
	}
	go func() {
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				continue
			}
			l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
			_, _ = cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Update(ctx, l, metav1.UpdateOptions{})
		}
	}()
}

// schedulerConfig reads the KubeSchedulerConfiguration shipped in
// manifests/scheduler.yaml and points it at this test's broker and API server.
func schedulerConfig(t testing.TB, brokerAddr, kubeconfig string, mutate func(map[string]any)) string {
	t.Helper()
	cfg, err := manifests.ShippedSchedulerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetClientConnection(kubeconfig, 500, 1000)
	if le, _ := cfg["leaderElection"].(map[string]any); le["leaderElect"] != true {
		t.Errorf("the shipped configuration must elect a leader (two replicas run), has leaderElection %v", le)
	}
	// In-process the scheduler must run without it: upstream Run exits the
	// process when leadership ends, which is how a test stops it.
	cfg.SetLeaderElect(false)
	if err := cfg.SetBrokerAddresses(brokerAddr); err != nil {
		t.Fatal(err)
	}
	// Test brokers serve plaintext on loopback; a test of the real broker
	// program sets the shipped mutual TLS back with mutate.
	if err := cfg.SetBrokerPlaintext(); err != nil {
		t.Fatal(err)
	}
	// The shipped role policy, read from where this test runs.
	policy, err := manifests.ShippedRolePolicy()
	if err != nil {
		t.Fatal(err)
	}
	policyPath := filepath.Join(t.TempDir(), "role-policy.yaml")
	if err := os.WriteFile(policyPath, policy, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetRolePolicyFile(policyPath); err != nil {
		t.Fatal(err)
	}
	args, err := cfg.MesosOffersArgs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range args {
		a["reconnectMaxDelay"] = "200ms"
	}
	if mutate != nil {
		mutate(cfg)
	}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "scheduler-config.yaml")
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// setNodeReady writes the status the broker gives an agent's Node while no
// kubelet runs there. The node controllers update new Nodes too, hence the
// retries.
func setNodeReady(ctx context.Context, cs kubernetes.Interface, name string, capacity corev1.ResourceList) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		node, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		node.Status.Capacity, node.Status.Allocatable = capacity, capacity
		node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "MesosAgentActive", LastHeartbeatTime: now, LastTransitionTime: now}}
		_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
		return err
	})
}

var schedulerSeq atomic.Int64

// startScheduler runs the k8sm kube-scheduler in-process, as
// plugin/cmd/kube-scheduler does (app.Setup and app.Run with the plugin), but
// without the signal handler and the serving port, so that a test may run
// several one after another. Flags are the upstream ones.
func startScheduler(ctx context.Context, t testing.TB, flags ...string) {
	t.Helper()
	opts := options.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(append([]string{"--secure-port=0"}, flags...)); err != nil {
		t.Fatal(err)
	}
	name, err := cache.NewInformerName(fmt.Sprintf("k8sm-scheduler-%d", schedulerSeq.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	opts.InformerName = name
	// app.Run registers the scheduler's configuration in the process-wide
	// configz registry and fails if an earlier scheduler of this test
	// binary left it there.
	configz.Delete("componentconfig")
	cc, sched, err := app.Setup(ctx, opts, app.WithPlugin(mesosoffers.Name, mesosoffers.New))
	if err != nil {
		t.Fatalf("setting up the scheduler: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := app.Run(ctx, cc, sched); err != nil && ctx.Err() == nil {
			t.Errorf("scheduler: %v", err)
		}
	}()
	t.Cleanup(func() {
		<-done
		configz.Delete("componentconfig")
	})
}
