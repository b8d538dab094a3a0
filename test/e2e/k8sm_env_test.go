//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/k8sm/k8sm/hack/cluster"
	"github.com/k8sm/k8sm/test/e2e/invariants"
)

// k8smEnv is the one k8sm cluster the suite shares: control plane,
// ZooKeeper, the Mesos test double with its agents (real executors and
// kubelets), the broker and the k8sm kube-scheduler, as `make up` runs them.
type k8smEnv struct {
	ctx        context.Context
	cl         *cluster.Cluster
	cfg        cluster.Config
	cs         kubernetes.Interface
	kubeconfig string
	binDir     string
	masterMu   sync.Mutex
	masterURL  string // the leading Mesos master, for /master/state (master())
	controlURL string // mesos-sim's fault-injection API
	metricsURL string // the broker's /metrics
	opts       invariants.Options
}

const (
	schedulerName = "mesos-scheduler"
	// Every test pod is this small, so that ten of them fit an agent with
	// room to spare and the suite stays cheap on two cores.
	podCPU = "50m"
	podMem = "32Mi"
	// converge bounds how long the eventually consistent system may take to
	// satisfy the invariants after a test.
	converge = 90 * time.Second
)

// bringUp starts the shared cluster; the caller tears it down with down.
func bringUp(t *testing.T, ctx context.Context) *k8smEnv {
	t.Helper()
	binDir := os.Getenv("K8SM_BIN_DIR")
	if binDir == "" {
		t.Fatal("K8SM_BIN_DIR is not set: run these tests with `make e2e`, which builds the binaries first")
	}
	// A short path: unix socket paths of the agents' containerds are
	// limited to 108 bytes, and t.TempDir names are long.
	dir, err := os.MkdirTemp("", "k8sm-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// K8SM_E2E_KEEP=1 keeps a failed run's state, its components'
		// logs among it, for the post-mortem.
		if t.Failed() && os.Getenv("K8SM_E2E_KEEP") != "" {
			t.Logf("K8SM_E2E_KEEP: the failed run's state and logs are kept in %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	var cfg cluster.Config
	var cl *cluster.Cluster
	start := time.Now()
	// TestConfig picks free ports by asking the kernel, and another program
	// may take one before the component listens on it: try again on other
	// ports then, as a person would.
	for attempt := 1; ; attempt++ {
		cfg, err = cluster.TestConfig(filepath.Join(dir, fmt.Sprintf("state%d", attempt)), binDir)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Agents = 2
		// A machine that joins the running cluster (scenario daemonset).
		cfg.StandbyAgents = 1
		// No sample Deployment: the invariants are checked on the tests' pods.
		cfg.SampleDeployment = false
		// The chaos suite's exact faults (pkg/failpoint).
		cfg.FailpointsDir = filepath.Join(dir, fmt.Sprintf("failpoints%d", attempt))
		if err := os.MkdirAll(cfg.FailpointsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		stateDir := cfg.StateDir
		cl, err = cluster.Up(ctx, cfg)
		t.Cleanup(func() {
			if t.Failed() && os.Getenv("K8SM_E2E_KEEP") != "" {
				keepLogs(t, stateDir, filepath.Join(dir, "logs"))
			}
			if err := cluster.Down(context.Background(), stateDir); err != nil {
				t.Errorf("tearing the cluster down: %v", err)
			}
		})
		if err != nil && strings.Contains(err.Error(), "already in use") && attempt < 3 {
			t.Logf("bringing the k8sm cluster up (attempt %d): %v; trying other ports", attempt, err)
			if err := cluster.Down(context.Background(), stateDir); err != nil {
				t.Fatalf("tearing the failed attempt down: %v", err)
			}
			continue
		}
		if err != nil {
			dumpLogs(t, cfg.StateDir)
			t.Fatalf("bringing the k8sm cluster up: %v", err)
		}
		break
	}
	t.Logf("k8sm cluster up in %s (state in %s)", time.Since(start).Round(time.Second), cfg.StateDir)
	cs, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	e := &k8smEnv{
		ctx: ctx, cl: cl, cfg: cfg, cs: cs, binDir: binDir,
		kubeconfig: cl.AdminKubeconfig,
		masterURL:  cl.MesosMasterURL,
		controlURL: cl.SimControlURL,
		metricsURL: cl.BrokerMetricsURL,
		// The broker's default executor charge (--executor-cpus, --executor-mem).
		opts: invariants.Options{Executor: invariants.Resources{CPUs: 0.25, Mem: 128}},
	}
	// Every agent is a Ready node before the first test.
	e.eventually(t, 3*time.Minute, "every agent to be a Ready node", func() (bool, string) {
		st, err := e.masterState()
		if err != nil {
			return false, err.Error()
		}
		var active []string
		for _, s := range st.Slaves {
			if s.Active {
				active = append(active, s.Hostname)
			}
		}
		if len(active) != cfg.Agents {
			return false, fmt.Sprintf("%d active agents in Mesos: %v", len(active), active)
		}
		for _, h := range active {
			if !e.nodeReady(h) {
				return false, "node " + h + " is not Ready"
			}
		}
		return true, ""
	})
	return e
}

// dumpLogs shows the tail of every component's log, so that a failed CI
// run says why.
// keepLogs copies the components' logs and the Mesos sandboxes' stdout and
// stderr (the executors') out of stateDir, which the cluster's Down removes.
func keepLogs(t *testing.T, stateDir, to string) {
	err := filepath.WalkDir(stateDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if n := d.Name(); !strings.HasSuffix(n, ".log") && n != "stdout" && n != "stderr" {
			return nil
		}
		rel, _ := filepath.Rel(stateDir, path)
		b, err := os.ReadFile(path)
		if err != nil {
			return nil
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(to, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Logf("keeping the logs of %s: %v", stateDir, err)
	}
}

func dumpLogs(t *testing.T, stateDir string) {
	logs, _ := filepath.Glob(filepath.Join(stateDir, "logs", "*.log"))
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		t.Logf("---- tail of %s ----\n%s", l, b)
	}
}

// test runs one scenario in a namespace of its own, then checks every
// invariant (converging: the system is eventually consistent), deletes the
// namespace, waits for it and its tasks to go, and checks again.
func (e *k8smEnv) test(t *testing.T, name string, f func(t *testing.T, ns string)) {
	t.Run(name, func(t *testing.T) {
		ns := fmt.Sprintf("e2e-%s-%04d", strings.ToLower(strings.ReplaceAll(name, "_", "-")), rand.IntN(10000))
		if len(ns) > 63 {
			ns = ns[:63]
		}
		if _, err := e.cs.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
		// The default service account must exist before pods can be created.
		e.eventually(t, time.Minute, "the default service account of "+ns, func() (bool, string) {
			_, err := e.cs.CoreV1().ServiceAccounts(ns).Get(e.ctx, "default", metav1.GetOptions{})
			return err == nil, fmt.Sprint(err)
		})
		t.Cleanup(func() {
			e.checkInvariants(t, "after the test")
			if t.Failed() {
				e.describe(t, ns)
			}
			e.deleteNamespace(t, ns)
			e.checkInvariants(t, "after deleting its namespace")
		})
		f(t, ns)
	})
}

func (e *k8smEnv) checkInvariants(t *testing.T, when string) {
	t.Helper()
	if err := invariants.Converge(e.ctx, e, e.opts, converge, time.Second); err != nil {
		t.Errorf("invariants %s: %v", when, err)
	}
}

// MasterState implements invariants.Source.
func (e *k8smEnv) MasterState(ctx context.Context) (*invariants.MasterState, error) {
	return e.masterState()
}

// Pods implements invariants.Source: every pod of the cluster.
func (e *k8smEnv) Pods(ctx context.Context) ([]corev1.Pod, error) {
	l, err := e.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	return l.Items, nil
}

func (e *k8smEnv) masterState() (*invariants.MasterState, error) {
	b, err := e.get(e.master() + "/master/state")
	if err != nil {
		return nil, err
	}
	return invariants.ParseMasterState(b)
}

// master is the leading Mesos master's URL; followMaster updates it after a
// failover (the elected master listens elsewhere).
func (e *k8smEnv) master() string {
	e.masterMu.Lock()
	defer e.masterMu.Unlock()
	return e.masterURL
}

// followMaster waits until mesos-sim names a leading master other than the
// one before and makes it the suite's master.
func (e *k8smEnv) followMaster(t *testing.T, before string) {
	t.Helper()
	e.eventually(t, 2*time.Minute, "a new leading Mesos master", func() (bool, string) {
		b, err := e.get(e.controlURL + "/cluster")
		if err != nil {
			return false, err.Error()
		}
		var c struct {
			Leader string `json:"leader"`
		}
		if err := json.Unmarshal(b, &c); err != nil || c.Leader == "" {
			return false, fmt.Sprintf("no leader (%v)", err)
		}
		url := "http://" + c.Leader
		if url == before {
			return false, "the old master still leads"
		}
		e.masterMu.Lock()
		e.masterURL = url
		e.masterMu.Unlock()
		return true, ""
	})
}

func (e *k8smEnv) get(url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return b, nil
}

// control calls mesos-sim's fault-injection API, e.g. "agents/1/kill".
func (e *k8smEnv) control(t *testing.T, path string) {
	t.Helper()
	resp, err := http.Post(e.controlURL+"/"+path, "text/plain", nil)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %s: %s", path, resp.Status, b)
	}
}

// simAgent is an agent as mesos-sim's control API lists it.
type simAgent struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	Running  bool   `json:"running"`
}

func (e *k8smEnv) simAgents(t *testing.T) []simAgent {
	t.Helper()
	b, err := e.get(e.controlURL + "/cluster")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Agents []simAgent `json:"agents"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatalf("decoding mesos-sim /cluster: %v", err)
	}
	return c.Agents
}

// agent is one Mesos agent: its index in mesos-sim, id and node name.
type agent struct {
	index    int
	id, node string
	res      invariants.Resources
}

// agents lists the agents the master knows, with their sim index: the
// suite's own, not the standby one that may have joined.
func (e *k8smEnv) agents(t *testing.T) []agent {
	t.Helper()
	st, err := e.masterState()
	if err != nil {
		t.Fatal(err)
	}
	var out []agent
	for _, sa := range e.simAgents(t) {
		if sa.Index >= e.cfg.Agents {
			continue
		}
		for _, s := range st.Slaves {
			if s.ID == sa.ID {
				out = append(out, agent{index: sa.Index, id: s.ID, node: s.Hostname, res: s.Resources})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].index < out[j].index })
	if len(out) != e.cfg.Agents {
		t.Fatalf("the master knows %d of the %d agents: %+v", len(out), e.cfg.Agents, out)
	}
	return out
}

func (e *k8smEnv) nodeReady(name string) bool {
	n, err := e.cs.CoreV1().Nodes().Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// eventually polls cond until it holds; on timeout the test fails with
// cond's last word on what it saw.
func (e *k8smEnv) eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		ok, status := cond()
		if ok {
			return
		}
		last = status
		if time.Now().After(deadline) || e.ctx.Err() != nil {
			t.Fatalf("waited %s for %s; last: %s", timeout, what, last)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// podSpec is the suite's tiny webapp pod.
func podSpec(mutate ...func(*corev1.PodSpec)) corev1.PodSpec {
	grace := int64(2)
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	s := corev1.PodSpec{
		SchedulerName:                 schedulerName,
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{
			Name: "web", Image: cluster.WebappImage, ImagePullPolicy: corev1.PullNever,
			Env: []corev1.EnvVar{fieldEnv("POD_NAME", "metadata.name"), fieldEnv("POD_NAMESPACE", "metadata.namespace"), fieldEnv("NODE_NAME", "spec.nodeName")},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse(podCPU), corev1.ResourceMemory: resource.MustParse(podMem)}},
		}},
	}
	for _, m := range mutate {
		m(&s)
	}
	return s
}

func (e *k8smEnv) createPod(t *testing.T, ns, name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: podSpec()}
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	for _, m := range mutate {
		m(p)
	}
	p, err := e.cs.CoreV1().Pods(ns).Create(e.ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating pod %s/%s: %v", ns, name, err)
	}
	return p
}

func (e *k8smEnv) createDeployment(t *testing.T, ns, name string, replicas int32, mutate ...func(*appsv1.Deployment)) *appsv1.Deployment {
	t.Helper()
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec()},
		},
	}
	for _, m := range mutate {
		m(d)
	}
	d, err := e.cs.AppsV1().Deployments(ns).Create(e.ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating deployment %s/%s: %v", ns, name, err)
	}
	return d
}

func (e *k8smEnv) scale(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, replicas)
	if _, err := e.cs.AppsV1().Deployments(ns).Patch(e.ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("scaling deployment %s/%s to %d: %v", ns, name, replicas, err)
	}
}

func (e *k8smEnv) pods(t *testing.T, ns, selector string) []corev1.Pod {
	t.Helper()
	l, err := e.cs.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatalf("listing pods of %s (%s): %v", ns, selector, err)
	}
	sort.Slice(l.Items, func(i, j int) bool { return l.Items[i].Name < l.Items[j].Name })
	return l.Items
}

func ready(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// waitRunning waits until n pods match selector, all Running and Ready,
// each with a RUNNING task, and returns them.
func (e *k8smEnv) waitRunning(t *testing.T, ns, selector string, n int, timeout time.Duration) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	e.eventually(t, timeout, fmt.Sprintf("%d running pods %q in %s", n, selector, ns), func() (bool, string) {
		ps := e.pods(t, ns, selector)
		var live []corev1.Pod
		var notReady []string
		for i := range ps {
			if ps[i].DeletionTimestamp != nil || ps[i].Status.Phase == corev1.PodFailed || ps[i].Status.Phase == corev1.PodSucceeded {
				continue
			}
			live = append(live, ps[i])
			if !ready(&ps[i]) {
				notReady = append(notReady, fmt.Sprintf("%s %s node=%q", ps[i].Name, ps[i].Status.Phase, ps[i].Spec.NodeName))
			}
		}
		if len(live) != n || len(notReady) > 0 {
			return false, fmt.Sprintf("%d live pods, not ready: %v", len(live), notReady)
		}
		st, err := e.masterState()
		if err != nil {
			return false, err.Error()
		}
		tasks := tasksByUID(st)
		for _, p := range live {
			if ts := tasks[string(p.UID)]; len(ts) != 1 || ts[0].State != "TASK_RUNNING" {
				return false, fmt.Sprintf("pod %s has tasks %v", p.Name, describeTasks(ts))
			}
		}
		out = live
		return true, ""
	})
	return out
}

// tasksByUID indexes every task entry of the k8sm framework, active or
// completed, by pod UID.
func tasksByUID(st *invariants.MasterState) map[string][]invariants.Task {
	out := map[string][]invariants.Task{}
	for _, fws := range [][]invariants.Framework{st.Frameworks, st.CompletedFrameworks} {
		for _, fw := range fws {
			if fw.Name != "k8sm" {
				continue
			}
			for _, t := range slices.Concat(fw.Tasks, fw.CompletedTasks) {
				if uid := invariants.PodUID(t); uid != "" {
					out[uid] = append(out[uid], t)
				}
			}
		}
	}
	return out
}

func describeTasks(ts []invariants.Task) string {
	if len(ts) == 0 {
		return "none"
	}
	var s []string
	for _, t := range ts {
		s = append(s, fmt.Sprintf("%s %s on %s", t.ID, t.State, t.SlaveID))
	}
	return strings.Join(s, "; ")
}

// waitTasksEnded waits until the task of every uid is in state want (its
// only task: a pod runs at most once).
func (e *k8smEnv) waitTasksEnded(t *testing.T, uids []types.UID, want string, timeout time.Duration) {
	t.Helper()
	e.eventually(t, timeout, fmt.Sprintf("the tasks of %d pods to be %s", len(uids), want), func() (bool, string) {
		st, err := e.masterState()
		if err != nil {
			return false, err.Error()
		}
		tasks := tasksByUID(st)
		var bad []string
		for _, uid := range uids {
			ts := tasks[string(uid)]
			if len(ts) != 1 || ts[0].State != want {
				bad = append(bad, fmt.Sprintf("pod %s: %s", uid, describeTasks(ts)))
			}
		}
		return len(bad) == 0, strings.Join(bad, "; ")
	})
}

func (e *k8smEnv) deleteNamespace(t *testing.T, ns string) {
	t.Helper()
	if err := e.cs.CoreV1().Namespaces().Delete(e.ctx, ns, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("deleting namespace %s: %v", ns, err)
		return
	}
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		_, err := e.cs.CoreV1().Namespaces().Get(e.ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	l, _ := e.cs.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{})
	var left []string
	if l != nil {
		for _, p := range l.Items {
			left = append(left, fmt.Sprintf("%s (%s, node %q)", p.Name, p.Status.Phase, p.Spec.NodeName))
		}
	}
	t.Errorf("namespace %s still exists 3 minutes after its deletion; pods left: %v", ns, left)
}

// describe logs what a person would look at after a failure.
func (e *k8smEnv) describe(t *testing.T, ns string) {
	out, _ := e.kubectlErr("get", "pods,events", "-n", ns, "-o", "wide")
	t.Logf("kubectl get pods,events -n %s:\n%s", ns, out)
	if b, err := e.get(e.master() + "/master/state"); err == nil {
		t.Logf("/master/state: %s", b)
	}
}

func (e *k8smEnv) kubectlErr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(e.ctx, time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.binDir, "kubectl"), append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (e *k8smEnv) kubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.kubectlErr(args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// events returns the messages of the events about a pod.
func (e *k8smEnv) events(t *testing.T, ns, pod string) []string {
	t.Helper()
	l, err := e.cs.CoreV1().Events(ns).List(e.ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod})
	if err != nil {
		t.Fatalf("listing events of %s/%s: %v", ns, pod, err)
	}
	var out []string
	for _, ev := range l.Items {
		out = append(out, ev.Reason+": "+ev.Message)
	}
	return out
}

// httpGet fetches a URL on the host once.
func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s: %s", url, resp.Status)
	}
	return string(b), nil
}
