//go:build integration

// Package integration starts the real local control plane through
// hack/cluster, exactly as `make up` does, and checks it as a user would:
// kubectl answers, Deployments make pods, ZooKeeper serves, containerd runs
// a pod, and stopping it leaves nothing behind.
package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/moby/sys/mountinfo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/k8sm/k8sm/hack/cluster"
)

func binDir(t *testing.T) string {
	t.Helper()
	d := os.Getenv("K8SM_BIN_DIR")
	if d == "" {
		t.Fatal("K8SM_BIN_DIR is not set: run these tests with `make test-integration`, which builds the binaries first")
	}
	return d
}

func TestLocalControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg, err := cluster.TestConfig(filepath.Join(t.TempDir(), "state"), binDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agents = 0 // the control plane alone: pods stay Pending
	cl, err := cluster.Up(ctx, cfg)
	t.Cleanup(func() { downLeavesNothing(t, cl, cfg) })
	if err != nil {
		t.Fatalf("bringing the cluster up: %v", err)
	}

	t.Run("kubectl readyz", func(t *testing.T) {
		out := kubectl(t, cfg, "get", "--raw", "/readyz")
		if strings.TrimSpace(out) != "ok" {
			t.Fatalf("/readyz answered %q", out)
		}
	})

	t.Run("deployment makes pending pods", func(t *testing.T) {
		kubectl(t, cfg, "create", "deployment", "web", "--image="+cluster.WebappImage, "--replicas=2")
		cs, err := cl.Client()
		if err != nil {
			t.Fatal(err)
		}
		var pods []corev1.Pod
		err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
			l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, err
			}
			pods = l.Items
			return len(pods) == 2, nil
		})
		if err != nil {
			t.Fatalf("the controller manager did not make 2 pods for the deployment (got %d): %v", len(pods), err)
		}
		// There are no nodes yet, so nothing may run them.
		for _, p := range pods {
			if p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
				t.Errorf("pod %s is %s on node %q; want Pending and unbound", p.Name, p.Status.Phase, p.Spec.NodeName)
			}
		}
	})

	t.Run("zookeeper", func(t *testing.T) {
		conn, events, err := zk.Connect([]string{cfg.ZooKeeperAddr()}, 10*time.Second, zk.WithLogInfo(false))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		waitSession(t, events)
		if _, err := conn.Create("/mesos", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
			t.Fatalf("creating /mesos: %v", err)
		}
		if ok, _, err := conn.Exists("/mesos"); err != nil || !ok {
			t.Fatalf("/mesos does not exist after create: %v", err)
		}
	})

	t.Run("containerd runs a pod with a host port", func(t *testing.T) {
		runPodThroughCRI(ctx, t, cfg)
	})

	t.Run("kubectl apply -k manifests", func(t *testing.T) {
		applyKustomization(ctx, t, cl, cfg)
	})

	t.Run("scheduler and broker run from the applied manifests", func(t *testing.T) {
		cs, err := cl.Client()
		if err != nil {
			t.Fatal(err)
		}
		runFromManifests(ctx, t, cs, cfg)
	})
}

// applyKustomization: `kubectl apply -k manifests/` — what docs/deploy.md
// tells a user to run — is accepted by the API server (its admission and
// validation, server-side dry run first) and makes the scheduler and broker
// Deployments from the images `make images` tags, their ServiceAccounts,
// RBAC and configuration. No image runs here (no registry, no nodes): this
// proves the objects, not the containers.
func applyKustomization(ctx context.Context, t *testing.T, cl *cluster.Cluster, cfg cluster.Config) {
	dir, err := filepath.Abs(filepath.Join("..", "..", "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	out := kubectl(t, cfg, "apply", "-k", dir, "--dry-run=server")
	for _, want := range []string{"deployment.apps/k8sm-scheduler", "deployment.apps/k8sm-broker", "configmap/k8sm-scheduler-config", "service/k8sm-broker-executor"} {
		if !strings.Contains(out, want) {
			t.Errorf("server-side dry run does not mention %s:\n%s", want, out)
		}
	}
	kubectl(t, cfg, "apply", "-k", dir)
	cs, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	for name, image := range map[string]string{"k8sm-scheduler": "k8sm/kube-scheduler:latest", "k8sm-broker": "k8sm/k8sm-broker:latest"} {
		d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("Deployment kube-system/%s: %v", name, err)
			continue
		}
		spec := d.Spec.Template.Spec
		if got := spec.Containers[0].Image; got != image {
			t.Errorf("Deployment %s runs %s, want %s (make images)", name, got, image)
		}
		if _, err := cs.CoreV1().ServiceAccounts("kube-system").Get(ctx, spec.ServiceAccountName, metav1.GetOptions{}); err != nil {
			t.Errorf("Deployment %s's ServiceAccount: %v", name, err)
		}
	}
	for _, crb := range []string{"k8sm-scheduler:kube-scheduler", "system:k8sm-broker"} {
		if _, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, crb, metav1.GetOptions{}); err != nil {
			t.Errorf("ClusterRoleBinding %s: %v", crb, err)
		}
	}
}

// runPodThroughCRI does what a kubelet does for one pod: a sandbox from the
// local pause image, the sample web app in it, a host port on loopback.
func runPodThroughCRI(ctx context.Context, t *testing.T, cfg cluster.Config) {
	conn, err := grpc.NewClient("unix://"+cfg.ContainerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	img := runtimeapi.NewImageServiceClient(conn)
	for _, ref := range []string{cluster.PauseImage, cluster.WebappImage} {
		st, err := img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		if err != nil || st.Image == nil {
			t.Fatalf("image %s is not in containerd: %v", ref, err)
		}
	}
	hostPort, err := cluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	logDir := t.TempDir()
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "itest-uid-1"},
		Hostname:     "web",
		LogDirectory: logDir,
		PortMappings: []*runtimeapi.PortMapping{{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 8080, HostPort: int32(hostPort), HostIp: "127.0.0.1"}},
	}
	sb, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
	if err != nil {
		t.Fatalf("running a pod sandbox: %v", err)
	}
	ctr, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: sb.PodSandboxId,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: "web"},
			Image:    &runtimeapi.ImageSpec{Image: cluster.WebappImage},
			Envs:     []*runtimeapi.KeyValue{{Key: "POD_NAME", Value: []byte("web")}},
			LogPath:  "web.log",
		},
		SandboxConfig: sbCfg,
	})
	if err != nil {
		t.Fatalf("creating the web container: %v", err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatalf("starting the web container: %v", err)
	}
	url := "http://127.0.0.1:" + strconv.Itoa(hostPort) + "/"
	var body string
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		resp, err := http.Get(url)
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		st, _ := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId})
		t.Fatalf("the web app did not answer on host port %d: %v (container: %v)", hostPort, err, st)
	}
	if !strings.Contains(body, "pod /web") && !strings.Contains(body, "hello from web") {
		t.Fatalf("unexpected answer from the web app: %q", body)
	}
	// Down must clean up the running sandbox itself; leave it running.
}

func downLeavesNothing(t *testing.T, cl *cluster.Cluster, cfg cluster.Config) {
	t.Helper()
	var pids []int
	if cl != nil {
		for _, name := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "zookeeper", "containerd"} {
			if p := cl.Process(name); p != nil {
				pids = append(pids, p.Pid())
			}
		}
	}
	if err := cluster.Down(context.Background(), cfg.StateDir); err != nil {
		t.Errorf("down: %v", err)
	}
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			if !strings.Contains(string(b), ") Z ") {
				t.Errorf("process %d is still running after down", pid)
			}
		}
	}
	if _, err := os.Stat(cfg.StateDir); err == nil {
		t.Errorf("state dir %s still exists after down", cfg.StateDir)
	}
	if left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(cfg.StateDir)); err != nil || len(left) > 0 {
		t.Errorf("mounts under %s remain after down: %d (%v)", cfg.StateDir, len(left), err)
	}
	if _, err := os.Stat("/sys/class/net/" + cfg.CNIBridge); err == nil {
		t.Errorf("bridge %s remains after down", cfg.CNIBridge)
	}
	// Their veths and addresses go with them.
	checkNoPodNetworkLeft(t, cfg)
	if out, _ := exec.Command("pgrep", "-f", cfg.StateDir).Output(); len(out) > 0 {
		t.Errorf("processes naming %s remain after down: %s", cfg.StateDir, out)
	}
	// Host-wide leftovers of containerd and CNI go once no containerd is
	// left on the host (another cluster may legitimately share them).
	if out, _ := exec.Command("pgrep", "-x", "containerd").Output(); len(out) == 0 {
		if out, _ := exec.Command("iptables", "-w", "-t", "nat", "-S").Output(); strings.Contains(string(out), "CNI-HOSTPORT") {
			t.Errorf("CNI portmap chains remain after down")
		}
		if m, _ := filepath.Glob("/sys/fs/cgroup/*/k8s.io"); len(m) > 0 {
			t.Errorf("containerd cgroups remain after down: %v", m)
		}
	}
}

func kubectl(t *testing.T, cfg cluster.Config, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(cfg.BinDir, "kubectl"), append([]string{"--kubeconfig", cfg.PKI().Kubeconfig("admin")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func waitSession(t *testing.T, events <-chan zk.Event) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return
			}
		case <-timeout:
			t.Fatal("no ZooKeeper session within 30s")
		}
	}
}
