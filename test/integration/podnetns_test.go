//go:build integration

package integration

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/k8sm/k8sm/hack/cluster"
)

// checkNoPodNetworkLeft fails t if a pod network namespace of the cluster's
// pod subnet remains (after Down), or a nat rule CNI made for a pod of the
// control plane's containerd (its network is named after the bridge).
func checkNoPodNetworkLeft(t *testing.T, cfg cluster.Config) {
	t.Helper()
	if left := podNetnsLeft(t, cfg); len(left) > 0 {
		t.Errorf("pod network namespaces of %s remain after down: %s", cfg.PodSubnet, strings.Join(left, ", "))
	}
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S").Output()
	if err != nil {
		t.Errorf("iptables -t nat -S: %v", err)
		return
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, `name: \"k8sm-`+cfg.CNIBridge+`\"`) {
			t.Errorf("a nat rule of the cluster's pods remains after down: %s", l)
		}
	}
}

// podNetnsLeft lists the pod network namespaces containerd made
// (/run/netns/cni-*) that have an address of the cluster's pod subnet, with
// those addresses: what a pod sandbox leaves when nobody tore it down.
func podNetnsLeft(t *testing.T, cfg cluster.Config) []string {
	t.Helper()
	subnet, err := netip.ParsePrefix(cfg.PodSubnet)
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob("/run/netns/cni-*")
	var left []string
	for _, p := range paths {
		name := filepath.Base(p)
		out, err := exec.Command("ip", "-n", name, "-o", "-4", "addr", "show").Output()
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(out), "\n") {
			// 2: eth0    inet 10.218.0.3/24 brd 10.218.0.255 scope global eth0
			f := strings.Fields(l)
			if len(f) < 4 || f[2] != "inet" {
				continue
			}
			if a, err := netip.ParsePrefix(f[3]); err == nil && subnet.Contains(a.Addr()) {
				left = append(left, name+" ("+f[1]+" "+f[3]+")")
			}
		}
	}
	return left
}

// TestDownAfterContainerdDied: a pod sandbox whose containerd is gone
// before Down could remove it through CRI — it died, or was stopped while
// the sandbox was still being made — keeps its network namespace, its
// address of the pod subnet and its veth, and its pause process outlives
// its shim. Down must remove them all the same.
func TestDownAfterContainerdDied(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg, err := cluster.TestConfig(filepath.Join(t.TempDir(), "state"), binDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agents = 0
	cl, err := cluster.Up(ctx, cfg)
	t.Cleanup(func() { downLeavesNothing(t, cl, cfg) })
	if err != nil {
		t.Fatalf("bringing the cluster up: %v", err)
	}
	conn, err := grpc.NewClient("unix://"+cfg.ContainerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	if _, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "orphan", Namespace: "default", Uid: "itest-orphan-1"},
		Hostname:     "orphan",
		LogDirectory: t.TempDir(),
	}}); err != nil {
		t.Fatalf("running a pod sandbox: %v", err)
	}
	if left := podNetnsLeft(t, cfg); len(left) != 1 {
		t.Fatalf("the sandbox's network namespace with an address of %s: found %v, want one", cfg.PodSubnet, left)
	}
	ctrd := cl.Process("containerd")
	if ctrd == nil {
		t.Fatal("the cluster runs no containerd")
	}
	if err := syscall.Kill(ctrd.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}
