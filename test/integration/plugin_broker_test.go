//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/hack/cluster"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/manifests"
)

// TestSchedulerWithBroker is the MesosOffers plugin's end of issue 5: the
// k8sm kube-scheduler (in-process, the shipped mesos-scheduler profile) and
// the real k8sm-broker binary against the Mesos test double and a real API
// server. Pods are placed only where Mesos offers fit, their tasks run on
// those agents with their host ports, `kubectl describe` says what Mesos is
// short of and on how many agents, and a pod that waited is scheduled when
// Mesos offers what it needs.
func TestSchedulerWithBroker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg, err := cluster.TestConfig(filepath.Join(t.TempDir(), "state"), binDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Containerd = false // hollow agents: no container runs
	cfg.Agents = 0         // this test runs its own Mesos, broker and scheduler
	cl, err := cluster.Up(ctx, cfg)
	t.Cleanup(func() { _ = cluster.Down(context.Background(), cfg.StateDir) })
	if err != nil {
		t.Fatalf("bringing the cluster up: %v", err)
	}
	cs, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, cfg, "apply", "-f", "../../manifests/broker-rbac.yaml")
	kubectl(t, cfg, "apply", "-f", "../../manifests/rbac.yaml")
	kubectl(t, cfg, "create", "clusterrolebinding", "k8sm-scheduler-user", "--clusterrole=k8sm-scheduler", "--user=system:kube-scheduler")
	kubectl(t, cfg, "-n", "kube-system", "create", "rolebinding", "k8sm-scheduler-user", "--role=k8sm-scheduler", "--user=system:kube-scheduler")

	// agent-1 fits the web pods; agent-2 is short of cpus; agent-3 is in
	// the wrong rack; agent-4 does not offer the host port; agent-5 fits but
	// a pod holds its port 31080 until the test frees it.
	agents := []struct{ name, resources, rack string }{
		{"agent-1", "cpus:2;mem:4096;disk:10000;ports:[31000-31010,31080-31080]", "r1"},
		// agent-2's Node has room for a web pod (1.05 cpus); its offers,
		// less the executor's 0.1, have not.
		{"agent-2", "cpus:1.05;mem:4096;disk:10000;ports:[31000-31010,31080-31080]", "r1"},
		{"agent-3", "cpus:4;mem:4096;disk:10000;ports:[31000-31010,31080-31080]", "r2"},
		{"agent-4", "cpus:4;mem:4096;disk:10000;ports:[32000-32100]", "r1"},
		{"agent-5", "cpus:4;mem:4096;disk:10000;ports:[31080-31080]", "r1"},
	}
	var acfgs []agent.Config
	for _, a := range agents {
		res, err := mesossim.ParseResources(a.resources)
		if err != nil {
			t.Fatal(err)
		}
		attrs, err := mesossim.ParseAttributes("rack:" + a.rack)
		if err != nil {
			t.Fatal(err)
		}
		acfgs = append(acfgs, agent.Config{Hostname: a.name, Resources: res, Attributes: attrs, Hollow: true, StatusUpdateRetryInterval: 300 * time.Millisecond})
	}
	sctx, scancel := context.WithCancel(context.Background())
	sim, err := mesossim.Start(sctx, mesossim.Config{
		ZK:      "zk://" + cfg.ZooKeeperAddr() + "/mesos",
		WorkDir: t.TempDir(),
		Master:  master.Config{HeartbeatInterval: 500 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: 200 * time.Millisecond},
		Agents:  acfgs,
	})
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); scancel() })

	brokerAddr, brokerHTTP := startBrokerBinary(ctx, t, cfg)
	for _, a := range agents {
		waitNode(ctx, t, cs, a.name)
	}
	waitNodesSchedulable(ctx, t, cs, len(agents))
	startScheduler(ctx, t, "--config="+schedulerConfig(t, brokerAddr, cfg.PKI().Kubeconfig("scheduler"), func(c map[string]any) {
		cert, key := cfg.PKI().SchedulerBrokerClient()
		if err := manifests.SchedulerConfig(c).SetBrokerTLS(cfg.PKI().CACert(), cert, key); err != nil {
			t.Fatal(err)
		}
	}), "--v=2")

	// The pod holding agent-5's port, placed there by the same scheduler.
	blocker := mesosPod("blocker", "250m")
	blocker.Spec.NodeSelector = map[string]string{corev1.LabelHostname: "agent-5"}
	blocker.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 31080}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, blocker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBound(ctx, t, cs, "blocker", "agent-5")
	waitTaskRunning(ctx, t, sim, "blocker", "agent-5", 31080)

	t.Run("deployment is placed only where offers fit", func(t *testing.T) {
		createWebDeployment(ctx, t, cs, 2)
		var bound, pending []corev1.Pod
		waitPods(ctx, t, cs, "app=web", func(pods []corev1.Pod) bool {
			bound, pending = split(pods)
			return len(pods) == 2 && len(bound) == 1 && hasFailedScheduling(ctx, cs, pending)
		})
		if bound[0].Spec.NodeName != "agent-1" {
			t.Errorf("web pod bound to %s, want agent-1 (the only r1 agent with 1 cpu and port 31080 offered)", bound[0].Spec.NodeName)
		}
		waitTaskRunning(ctx, t, sim, bound[0].Name, "agent-1", 31080)

		// What `kubectl describe pod` shows of the pod that waits.
		var describe string
		wantAll := []string{
			"0/5 nodes are available",
			"1 mesos: not enough cpus offered (1 requested)",      // agent-2
			"1 mesos: host ports [31080-31080] not offered",       // agent-4
			"1 node(s) didn't match Pod's node affinity/selector", // agent-3
			// agent-1 and agent-5 run pods with the port: the stock
			// NodePorts filter says so before MesosOffers is asked.
			"2 node(s) didn't have free ports for the requested pod ports",
		}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			describe = kubectl(t, cfg, "describe", "pod", pending[0].Name)
			for _, w := range wantAll {
				if !strings.Contains(describe, w) {
					return false, nil
				}
			}
			return true, nil
		})
		if err != nil {
			t.Errorf("kubectl describe pod %s does not say %q:\n%s", pending[0].Name, wantAll, describe)
		}
	})

	t.Run("a waiting pod is bound when Mesos offers what it needs", func(t *testing.T) {
		// Deleting the blocker ends its task (no kubelet on a hollow
		// agent: the broker kills it and removes the pod); Mesos then
		// offers agent-5's port again. Nothing else in the cluster
		// changes, and the scheduler's periodic flush of unschedulable
		// pods comes after 5 minutes: a pod bound well within that was
		// activated by the offer.
		start := time.Now()
		if err := cs.CoreV1().Pods("default").Delete(ctx, "blocker", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var bound []corev1.Pod
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, err
			}
			bound, _ = split(l.Items)
			return len(bound) == 2, nil
		})
		if err != nil {
			t.Fatalf("the waiting web pod was not bound after agent-5's port was offered again: %v", err)
		}
		nodes := map[string]bool{bound[0].Spec.NodeName: true, bound[1].Spec.NodeName: true}
		if !nodes["agent-1"] || !nodes["agent-5"] {
			t.Errorf("web pods on %v, want agent-1 and agent-5", nodes)
		}
		for _, p := range bound {
			waitTaskRunning(ctx, t, sim, p.Name, p.Spec.NodeName, 31080)
		}
		t.Logf("bound %v after the blocker's deletion", time.Since(start))
	})

	t.Run("an unplaceable pod says which resource is short", func(t *testing.T) {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, mesosPod("huge", "16"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want := "0/5 nodes are available: mesos: the pod fits no agent: at most 4 cpus offered, 16 requested"
		var describe string
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			describe = kubectl(t, cfg, "describe", "pod", "huge")
			return strings.Contains(describe, want), nil
		})
		if err != nil {
			t.Errorf("kubectl describe pod huge does not say %q:\n%s", want, describe)
		}
	})

	t.Run("an ACCEPT that fails after Launch answered fails its pod as the status says", func(t *testing.T) {
		// The master answers an ACCEPT 202 before it acts on it (as
		// Master::Http::scheduler does), so Launch answers and the pod is
		// bound before Mesos can say the launch failed. Here the offers
		// the ACCEPT names are rescinded as it reaches the master: 202,
		// then TASK_DROPPED. The pod ends Failed with that status, its
		// ReplicaSet replaces it, and no pod is left bound without a task.
		if err := sim.InjectCallFault(mesossim.CallFault{Type: scheduler.Call_ACCEPT, Count: 1, RescindOffers: true}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sim.ClearCallFaults)
		labels := map[string]string{"app": "retry"}
		tmpl := mesosPod("", "250m")
		tmpl.Spec.NodeSelector = map[string]string{corev1.LabelHostname: "agent-3"}
		tmpl.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 31005}}
		rs := &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "retry", Namespace: "default"},
			Spec: appsv1.ReplicaSetSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: tmpl.Spec},
			},
		}
		if _, err := cs.AppsV1().ReplicaSets("default").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var failed, live []corev1.Pod
		waitPods(ctx, t, cs, "app=retry", func(pods []corev1.Pod) bool {
			failed, live = nil, nil
			for _, p := range pods {
				if p.Status.Phase == corev1.PodFailed {
					failed = append(failed, p)
				} else {
					live = append(live, p)
				}
			}
			return len(failed) == 1 && len(live) == 1 && live[0].Spec.NodeName != ""
		})
		f := failed[0]
		if f.Spec.NodeName != "agent-3" {
			t.Errorf("the failed pod is bound to %q, want agent-3: Launch answered before the launch failed, and the scheduler bound it", f.Spec.NodeName)
		}
		if f.Status.Reason != "MesosTaskLost" || !strings.Contains(f.Status.Message, "TASK_DROPPED") || !strings.Contains(f.Status.Message, "invalid offers") {
			t.Errorf("the failed pod says %s: %q, want MesosTaskLost with the TASK_DROPPED status's message", f.Status.Reason, f.Status.Message)
		}
		// The replacement runs: its task is RUNNING with its port.
		waitTaskRunning(ctx, t, sim, live[0].Name, "agent-3", 31005)
		if err := cs.AppsV1().ReplicaSets("default").Delete(ctx, "retry", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	if code, _ := httpGet(ctx, brokerHTTP+"/readyz"); code != http.StatusOK {
		t.Errorf("the broker's /readyz answered %d", code)
	}
}

// startBrokerBinary runs the k8sm-broker program of K8SM_BIN_DIR against the
// cluster's ZooKeeper and API server, as a user would, and returns its gRPC
// address and its http://host:port (metrics, health) once it is ready.
func startBrokerBinary(ctx context.Context, t *testing.T, cfg cluster.Config) (grpcAddr, httpURL string) {
	t.Helper()
	gport, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	hport, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	grpcAddr = fmt.Sprintf("127.0.0.1:%d", gport)
	httpURL = fmt.Sprintf("http://127.0.0.1:%d", hport)
	logPath := filepath.Join(t.TempDir(), "k8sm-broker.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	// Mutual TLS as in a deployment (hack/cluster's certificates).
	servingCert, servingKey := cfg.PKI().BrokerServing()
	cmd := exec.Command(filepath.Join(cfg.BinDir, "k8sm-broker"),
		"--master=zk://"+cfg.ZooKeeperAddr()+"/mesos",
		"--zk=zk://"+cfg.ZooKeeperAddr()+"/k8sm",
		"--kubeconfig="+cfg.PKI().Kubeconfig("k8sm-broker"),
		"--grpc-bind-address="+grpcAddr,
		"--grpc-tls-cert-file="+servingCert, "--grpc-tls-private-key-file="+servingKey,
		"--grpc-client-ca-file="+cfg.PKI().CACert(),
		"--http-bind-address="+fmt.Sprintf("127.0.0.1:%d", hport),
		"--identity=broker-1",
		"--framework-hostname=127.0.0.1",
		"--executor-command=/bin/true", // hollow agents start no executor
		"--executor-cpus=0.1", "--executor-mem=64",
		"--decline-after=2s", "--refuse-seconds=1",
		"--v=2",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting k8sm-broker: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = log.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("k8sm-broker log (last 8 KiB):\n%s", tail(b, 8<<10))
			}
		}
	})
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case err := <-exited:
			return false, fmt.Errorf("k8sm-broker exited: %v", err)
		default:
		}
		code, _ := httpGet(ctx, httpURL+"/readyz")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("k8sm-broker not ready (elected and subscribed): %v", err)
	}
	return grpcAddr, httpURL
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func waitNode(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("the broker did not mirror agent %s as a Node: %v", name, err)
	}
}

func waitBound(ctx context.Context, t *testing.T, cs kubernetes.Interface, pod, node string) {
	t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = p.Spec.NodeName
		return got != "", nil
	})
	if err != nil || got != node {
		t.Fatalf("pod %s bound to %q (%v), want %s; FailedScheduling: %s", pod, got, err, node, eventMessage(ctx, cs, pod))
	}
}

// waitTaskRunning waits until the Mesos master runs the pod's task on the
// agent named node, holding the host port.
func waitTaskRunning(ctx context.Context, t *testing.T, sim *mesossim.Sim, pod, node string, port uint64) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		st := sim.Leader().State()
		hosts := map[string]string{}
		b, _ := json.Marshal(st["slaves"])
		var slaves []struct{ ID, Hostname string }
		_ = json.Unmarshal(b, &slaves)
		for _, s := range slaves {
			hosts[s.ID] = s.Hostname
		}
		for _, fw := range st["frameworks"].([]map[string]any) {
			b, _ := json.Marshal(fw["tasks"])
			var tasks []struct {
				Name, State string
				SlaveID     string `json:"slave_id"`
				Resources   struct{ Ports string }
			}
			_ = json.Unmarshal(b, &tasks)
			for _, task := range tasks {
				if task.Name != "default/"+pod {
					continue
				}
				last = fmt.Sprintf("%s on %s ports %s", task.State, hosts[task.SlaveID], task.Resources.Ports)
				if task.State == "TASK_RUNNING" && hosts[task.SlaveID] == node && strings.Contains(task.Resources.Ports, fmt.Sprintf("%d-%d", port, port)) {
					return true, nil
				}
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("Mesos does not run pod %s's task on %s with port %d: %v (last: %s)", pod, node, port, err, last)
	}
}
