//go:build e2e

// Package e2e drives k8sm the way a user does: the local-cluster program
// behind `make up` and `make down`, then kubectl.
package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"

	"github.com/k8sm/k8sm/hack/cluster"
	"github.com/k8sm/k8sm/pkg/taskinfo"
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
		"K8SM_CNI_BRIDGE="+bridge, "K8SM_POD_SUBNET="+subnet,
		// The agents' link and the services beside the pods, never a user's.
		"K8SM_HOST_SUBNET="+strings.Replace(strings.Replace(subnet, "10.", "172.22.", 1), ".0.0/16", ".0/24", 1),
		"K8SM_SERVICE_SUBNET="+strings.Replace(strings.Replace(subnet, "10.", "172.23.", 1), ".0.0/16", ".0/24", 1))
	for _, v := range []string{"K8SM_ETCD_PORT", "K8SM_ETCD_PEER_PORT", "K8SM_APISERVER_PORT", "K8SM_CONTROLLER_MANAGER_PORT", "K8SM_ZK_PORT",
		"K8SM_MESOS_PORT", "K8SM_MESOS_CONTROL_PORT", "K8SM_BROKER_GRPC_PORT", "K8SM_BROKER_HTTP_PORT", "K8SM_SCHEDULER_PORT"} {
		p, err := cluster.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		lc.env = append(lc.env, v+"="+strconv.Itoa(p))
	}
	// Agents and their kubelets take consecutive ports.
	for _, v := range []string{"K8SM_MESOS_AGENT_PORT", "K8SM_KUBELET_PORT"} {
		p, err := cluster.FreePortRange(4)
		if err != nil {
			t.Fatal(err)
		}
		lc.env = append(lc.env, v+"="+strconv.Itoa(p))
	}
	// Host ports of the agents' pods: away from a user's `make up`
	// (31000-31999) and from test clusters (cluster.TestConfig: 32000-33999).
	lc.env = append(lc.env, "K8SM_AGENT_HOST_PORTS=34000-34099")
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

// TestUpIsIdempotentRecoversAndDownLeavesNothing is `make up` as a user
// runs it: the whole cluster comes up and the sample Deployment runs through
// Mesos; a second up changes nothing; a crashed component is started again
// alone; down leaves nothing behind.
func TestUpIsIdempotentRecoversAndDownLeavesNothing(t *testing.T) {
	lc := newLocalCluster(t, "k8sme2e0", "10.90.0.0/16")
	t.Cleanup(func() { lc.run(t, "down") })

	out, code := lc.run(t, "up")
	if code != 0 {
		t.Fatalf("first up failed (exit %d):\n%s", code, out)
	}
	masterURL := "http://127.0.0.1:" + lc.getEnv("K8SM_MESOS_PORT")
	for _, want := range []string{
		"export KUBECONFIG=" + filepath.Join(lc.state, "pki", "admin.kubeconfig"),
		masterURL + "/master/state",
		"http://127.0.0.1:" + lc.getEnv("K8SM_BROKER_HTTP_PORT") + "/metrics",
		"http://127.0.0.1:" + lc.getEnv("K8SM_MESOS_CONTROL_PORT"),
		filepath.Join(lc.state, "logs"),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("up does not tell the user %q:\n%s", want, out)
		}
	}
	// What up promises: the sample's pods Running, each through a running
	// Mesos task, spread by Mesos offers over the agents' Nodes.
	pods := strings.Fields(lc.kubectl(t, "get", "pods", "-l", "app=hello", "-o",
		`jsonpath={range .items[*]}{.metadata.uid}/{.status.phase}/{.spec.nodeName}{" "}{end}`))
	tasks := masterTasks(t, masterURL)
	if len(pods) != 2 {
		t.Fatalf("the sample Deployment has %d pods, want 2: %v", len(pods), pods)
	}
	for _, p := range pods {
		f := strings.Split(p, "/")
		if f[1] != "Running" || !strings.HasPrefix(f[2], "k8sm-agent-") {
			t.Errorf("sample pod %s is %s on node %q, want Running on an agent", f[0], f[1], f[2])
		}
		if st := tasks[f[0]]; st != "TASK_RUNNING" {
			t.Errorf("the task of sample pod %s is %q at the master, want TASK_RUNNING", f[0], st)
		}
	}
	// The broker authenticated as its principal; a framework without
	// credentials is refused.
	if p := masterFrameworkPrincipals(t, masterURL); len(p) != 1 || p[0] != "k8sm" {
		t.Errorf("principals of the master's frameworks: %q, want the broker's k8sm alone", p)
	}
	anon, err := http.Post(masterURL+"/api/v1/scheduler", "application/json",
		strings.NewReader(`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"root","name":"intruder"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	anon.Body.Close()
	if anon.StatusCode != http.StatusUnauthorized {
		t.Errorf("SUBSCRIBE without credentials: %s, want 401 Unauthorized", anon.Status)
	}
	nodes := lc.kubectl(t, "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.k8sm\.io/attribute-zone} {end}`)
	if strings.TrimSpace(nodes) != "k8sm-agent-1=a k8sm-agent-2=b" {
		t.Errorf("nodes and their zones: %q, want k8sm-agent-1=a k8sm-agent-2=b", nodes)
	}
	if logs := lc.kubectl(t, "logs", "deploy/hello"); !strings.Contains(logs, "serving on") {
		t.Errorf("kubectl logs of the sample: %q", logs)
	}
	// The binaries carry the release they are built from: kubectl version
	// fails on an unstamped server, and the kubelets' Nodes show it.
	var versions struct {
		ServerVersion struct {
			GitVersion string `json:"gitVersion"`
		} `json:"serverVersion"`
	}
	if err := json.Unmarshal([]byte(lc.kubectl(t, "version", "-o", "json")), &versions); err != nil {
		t.Fatalf("kubectl version -o json: %v", err)
	}
	version := versions.ServerVersion.GitVersion
	if !strings.HasPrefix(version, "v1.") {
		t.Errorf("kubectl version: server %q, want the pinned v1.x release", version)
	}
	kubelets := lc.kubectl(t, "get", "nodes", "-o", `jsonpath={range .items[*]}{.status.nodeInfo.kubeletVersion} {end}`)
	if f := strings.Fields(kubelets); len(f) != 2 || f[0] != version || f[1] != version {
		t.Errorf("kubelet versions of the agents' Nodes: %q, want %s on both", kubelets, version)
	}

	out, code = lc.run(t, "up")
	if code != 0 || !strings.Contains(out, "already up") {
		t.Fatalf("second up should say the cluster is already up and succeed; exit %d:\n%s", code, out)
	}

	// Crashed components are started again by the next up, the rest kept.
	etcdPid := readPid(t, lc.state, "etcd")
	simPid := readPid(t, lc.state, "mesos-sim")
	for _, name := range []string{"kube-apiserver", "k8sm-broker"} {
		pid := readPid(t, lc.state, name)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitExit(t, pid)
	}
	out, code = lc.run(t, "up")
	if code != 0 {
		t.Fatalf("up after a crash failed (exit %d):\n%s", code, out)
	}
	if readPid(t, lc.state, "etcd") != etcdPid || readPid(t, lc.state, "mesos-sim") != simPid {
		t.Errorf("up after the API server and broker crashed restarted etcd or mesos-sim too")
	}
	if got := lc.kubectl(t, "get", "deployment", "hello", "-o", "name"); strings.TrimSpace(got) != "deployment.apps/hello" {
		t.Errorf("the deployment did not survive the API server restart: %q", got)
	}

	out, code = lc.run(t, "status")
	if code != 0 || strings.Contains(out, "not running") {
		t.Errorf("status after recovery (exit %d):\n%s", code, out)
	}

	cgroups := "/sys/fs/cgroup/memory" + cgroupParent(t, lc.state)
	if _, err := os.Stat(cgroups); err != nil {
		t.Errorf("the pods' cgroup parent %s is not where up said: %v", cgroups, err)
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
	if nss, _ := filepath.Glob("/run/netns/k8sme2e0-*"); len(nss) > 0 {
		t.Errorf("the agents' network namespaces remain after down: %v", nss)
	}
	if routes, _ := exec.Command("ip", "route", "show", "10.90.0.0/16").Output(); len(routes) > 0 {
		t.Errorf("routes of the pod subnet remain after down: %s", routes)
	}
	if _, err := os.Stat(cgroups); err == nil {
		t.Errorf("the pods' cgroups %s remain after down", cgroups)
	}
	if left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(lc.state)); err != nil || len(left) > 0 {
		t.Errorf("mounts under %s remain after down: %d (%v)", lc.state, len(left), err)
	}
	links, _ := filepath.Glob("/var/log/containers/hello-*")
	for _, l := range links {
		if target, _ := os.Readlink(l); strings.HasPrefix(target, lc.state) {
			t.Errorf("container log link %s into the state dir remains after down", l)
		}
	}
	// Host-wide leftovers of kubelets and containerd go once no cluster on
	// the host uses them any more (others may run at the same time).
	containerds, _ := exec.Command("pgrep", "-x", "containerd").Output()
	executors, _ := exec.Command("pgrep", "-x", "k8sm-executor").Output()
	if len(containerds) == 0 && len(executors) == 0 {
		for _, table := range []string{"filter", "nat", "mangle"} {
			if rules, _ := exec.Command("iptables", "-w", "-t", table, "-S").Output(); strings.Contains(string(rules), "KUBE-") {
				t.Errorf("the kubelets' KUBE-* chains remain in table %s after down", table)
			}
		}
		for _, p := range []string{"/var/lib/kubelet/device-plugins/kubelet.sock", "/run/containerd/s", "/var/lib/k8sm/kernel-defaults.json"} {
			if _, err := os.Stat(p); err == nil {
				t.Errorf("%s remains after down", p)
			}
		}
	}
	// down of a cluster that is not there is fine.
	if out, code := lc.run(t, "down"); code != 0 {
		t.Errorf("second down failed (exit %d):\n%s", code, out)
	}
}

// masterTasks are the Mesos master's live tasks, pod uid to state.
func masterTasks(t *testing.T, masterURL string) map[string]string {
	t.Helper()
	resp, err := http.Get(masterURL + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Frameworks []struct {
			Tasks []struct{ ID, State string } `json:"tasks"`
		} `json:"frameworks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range st.Frameworks {
		for _, task := range f.Tasks {
			out[string(taskinfo.PodUID(task.ID))] = task.State
		}
	}
	return out
}

// masterFrameworkPrincipals are the principals of the master's frameworks.
func masterFrameworkPrincipals(t *testing.T, masterURL string) []string {
	t.Helper()
	resp, err := http.Get(masterURL + "/master/frameworks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Frameworks []struct{ Principal string } `json:"frameworks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range st.Frameworks {
		out = append(out, f.Principal)
	}
	return out
}

// cgroupParent is where the cluster's kubelets put pods, as up recorded it.
func cgroupParent(t *testing.T, state string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "cgroup-parent"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestTakenPortIsReportedWithTheFix(t *testing.T) {
	first := newLocalCluster(t, "k8sme2e1", "10.91.0.0/16")
	// The control plane is enough to take the port.
	first.setEnv("K8SM_AGENTS", "0")
	t.Cleanup(func() { first.run(t, "down") })
	if out, code := first.run(t, "up"); code != 0 {
		t.Fatalf("up failed (exit %d):\n%s", code, out)
	}
	second := newLocalCluster(t, "k8sme2e2", "10.92.0.0/16")
	second.setEnv("K8SM_AGENTS", "0")
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
