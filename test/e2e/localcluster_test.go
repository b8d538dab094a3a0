//go:build e2e

// Package e2e drives k8sm the way a user does: the local-cluster program
// behind `make up` and `make down`, then kubectl.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k8sm/k8sm/hack/cluster"
)

// localCluster is one `make up` state directory with its own ports.
type localCluster struct {
	bin   string
	state string
	env   []string
}

func newLocalCluster(t *testing.T, bridge, subnet string) *localCluster {
	t.Helper()
	binDir := os.Getenv("K8SM_BIN_DIR")
	if binDir == "" {
		t.Fatal("K8SM_BIN_DIR is not set: run these tests with `make e2e`, which builds the binaries first")
	}
	lc := &localCluster{bin: binDir, state: filepath.Join(t.TempDir(), "local")}
	lc.env = append(os.Environ(),
		"K8SM_STATE_DIR="+lc.state, "K8SM_BIN_DIR="+binDir,
		"K8SM_CNI_BRIDGE="+bridge, "K8SM_POD_SUBNET="+subnet)
	for _, v := range []string{"K8SM_ETCD_PORT", "K8SM_ETCD_PEER_PORT", "K8SM_APISERVER_PORT", "K8SM_CONTROLLER_MANAGER_PORT", "K8SM_ZK_PORT"} {
		p, err := cluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		lc.env = append(lc.env, v+"="+strconv.Itoa(p))
	}
	return lc
}

func (lc *localCluster) setEnv(k, v string) { lc.env = append(lc.env, k+"="+v) }

func (lc *localCluster) getEnv(k string) string {
	for i := len(lc.env) - 1; i >= 0; i-- {
		if strings.HasPrefix(lc.env[i], k+"=") {
			return strings.TrimPrefix(lc.env[i], k+"=")
		}
	}
	return ""
}

// run executes local-cluster with args and returns its output and exit code.
func (lc *localCluster) run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(lc.bin, "local-cluster"), args...)
	cmd.Env = lc.env
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running local-cluster %v: %v", args, err)
	}
	return string(out), code
}

func (lc *localCluster) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(lc.bin, "kubectl"), append([]string{"--kubeconfig", filepath.Join(lc.state, "pki", "admin.kubeconfig")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestUpIsIdempotentRecoversAndDownLeavesNothing(t *testing.T) {
	lc := newLocalCluster(t, "k8sme2e0", "10.90.0.0/16")
	t.Cleanup(func() { lc.run(t, "down") })

	out, code := lc.run(t, "up")
	if code != 0 {
		t.Fatalf("first up failed (exit %d):\n%s", code, out)
	}
	if !strings.Contains(out, "export KUBECONFIG="+filepath.Join(lc.state, "pki", "admin.kubeconfig")) {
		t.Errorf("up does not tell the user how to use kubectl:\n%s", out)
	}
	if got := strings.TrimSpace(lc.kubectl(t, "get", "--raw", "/readyz")); got != "ok" {
		t.Fatalf("/readyz = %q", got)
	}
	lc.kubectl(t, "create", "deployment", "hello", "--image="+cluster.WebappImage)

	out, code = lc.run(t, "up")
	if code != 0 || !strings.Contains(out, "already up") {
		t.Fatalf("second up should say the cluster is already up and succeed; exit %d:\n%s", code, out)
	}

	// A crashed API server is started again by the next up, the rest kept.
	apiserverPid := readPid(t, lc.state, "kube-apiserver")
	etcdPid := readPid(t, lc.state, "etcd")
	if err := syscall.Kill(apiserverPid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExit(t, apiserverPid)
	out, code = lc.run(t, "up")
	if code != 0 {
		t.Fatalf("up after a crash failed (exit %d):\n%s", code, out)
	}
	if readPid(t, lc.state, "etcd") != etcdPid {
		t.Errorf("up after the API server crashed restarted etcd too")
	}
	if got := lc.kubectl(t, "get", "deployment", "hello", "-o", "name"); strings.TrimSpace(got) != "deployment.apps/hello" {
		t.Errorf("the deployment did not survive the API server restart: %q", got)
	}

	out, code = lc.run(t, "status")
	if code != 0 || strings.Contains(out, "not running") {
		t.Errorf("status after recovery (exit %d):\n%s", code, out)
	}

	out, code = lc.run(t, "down")
	if code != 0 {
		t.Fatalf("down failed (exit %d):\n%s", code, out)
	}
	if _, err := os.Stat(lc.state); !os.IsNotExist(err) {
		t.Errorf("state dir %s remains after down", lc.state)
	}
	if out, _ := exec.Command("pgrep", "-f", lc.state).Output(); len(out) > 0 {
		t.Errorf("processes of the cluster remain after down: %s", out)
	}
	if _, err := os.Stat("/sys/class/net/k8sme2e0"); err == nil {
		t.Errorf("bridge k8sme2e0 remains after down")
	}
	// down of a cluster that is not there is fine.
	if out, code := lc.run(t, "down"); code != 0 {
		t.Errorf("second down failed (exit %d):\n%s", code, out)
	}
}

func TestTakenPortIsReportedWithTheFix(t *testing.T) {
	first := newLocalCluster(t, "k8sme2e1", "10.91.0.0/16")
	t.Cleanup(func() { first.run(t, "down") })
	if out, code := first.run(t, "up"); code != 0 {
		t.Fatalf("up failed (exit %d):\n%s", code, out)
	}
	second := newLocalCluster(t, "k8sme2e2", "10.92.0.0/16")
	t.Cleanup(func() { second.run(t, "down") })
	port := first.getEnv("K8SM_APISERVER_PORT")
	second.setEnv("K8SM_APISERVER_PORT", port)
	out, code := second.run(t, "up")
	if code == 0 {
		t.Fatalf("up on a taken API server port succeeded:\n%s", out)
	}
	want := fmt.Sprintf("port %s for kube-apiserver is already in use by another program: stop it, or choose another port with K8SM_APISERVER_PORT=<port>", port)
	if !strings.Contains(out, want) {
		t.Fatalf("up did not say what is wrong and what to do; want %q in:\n%s", want, out)
	}
}

func readPid(t *testing.T, state, name string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "pids", name+".pid"))
	if err != nil {
		t.Fatalf("reading pid of %s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func waitExit(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 200; i++ {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("pid %d did not exit", pid)
}
