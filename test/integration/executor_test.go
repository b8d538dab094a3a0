//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/moby/sys/mountinfo"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/k8sm/k8sm/executor/cri"
	"github.com/k8sm/k8sm/hack/cluster"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/containment"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// The agent's hostname, hence the Node's name. The API server reaches a
// kubelet through the Node's Hostname address first, and the local
// cluster's kubelet serving certificates name "localhost": so this name.
const execNode = "localhost"

// executorWorld is the local control plane, containerd, a Mesos test double
// whose agent starts the real k8sm-executor, and a test scheduler playing
// the broker.
type executorWorld struct {
	t     *testing.T
	ctx   context.Context
	cfg   cluster.Config
	cs    kubernetes.Interface
	sim   *mesossim.Sim
	sched *simtest.Scheduler
	exec  *mesos.ExecutorInfo
	rt    *cri.Runtime
}

// testCgroupRoot is the agent's --cgroups_root (the executor's container
// and its pods go below it), distinct per test process so that runs on one
// host do not share it.
func testCgroupRoot() string { return fmt.Sprintf("/k8sm-test-%d/%s", os.Getpid(), execNode) }

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// freePortIn finds a loopback port in [lo, hi] that nobody listens on.
func freePortIn(t *testing.T, lo, hi int) int {
	t.Helper()
	for p := lo; p <= hi; p++ {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			l.Close()
			return p
		}
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return 0
}

func startExecutorWorld(t *testing.T, ctx context.Context) *executorWorld {
	t.Helper()
	cfg, err := cluster.TestConfig(filepath.Join(t.TempDir(), "state"), binDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Agents = 0 // this test runs its own Mesos double, executor and scheduler
	cl, err := cluster.Up(ctx, cfg)
	t.Cleanup(func() {
		if err := cluster.Down(context.Background(), cfg.StateDir); err != nil {
			t.Errorf("down: %v", err)
		}
		checkNoPodNetworkLeft(t, cfg)
	})
	if err != nil {
		t.Fatalf("bringing the cluster up: %v", err)
	}
	cs, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}
	pki := cfg.PKI()
	kubeconfig, err := pki.NodeCredentials(execNode, cfg.APIServerURL(), "")
	if err != nil {
		t.Fatal(err)
	}
	cert, key := pki.NodeServingCert(execNode)

	res, err := mesossim.ParseResources("cpus:4;mem:4096;ports:[31000-32000]")
	if err != nil {
		t.Fatal(err)
	}
	s, err := mesossim.Start(ctx, mesossim.Config{
		Master:  master.Config{HeartbeatInterval: time.Second, AllocationInterval: 100 * time.Millisecond, AgentPingTimeout: 10 * time.Second},
		WorkDir: filepath.Join(cfg.StateDir, "mesos"),
		Agents: []agent.Config{{
			Hostname: execNode, Resources: res,
			ExecutorShutdownGracePeriod:   10 * time.Second,
			ExecutorReregistrationTimeout: 2 * time.Second,
			RecoveryTimeout:               5 * time.Second,
			StatusUpdateRetryInterval:     time.Second,
			Containerizer: containment.Config{Launcher: containment.LauncherLinux,
				Isolation: "cgroups/cpu,cgroups/mem,cgroups/pids", CgroupsRoot: strings.TrimPrefix(testCgroupRoot(), "/")},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Last: the cgroups root of the agent's containers (a container whose
	// agent was killed keeps its empty cgroup), deepest first.
	t.Cleanup(func() {
		m, _ := filepath.Glob("/sys/fs/cgroup/*" + filepath.Dir(testCgroupRoot()))
		for _, top := range m {
			var dirs []string
			_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = os.Remove(dirs[i])
			}
		}
	})
	// Before Down: the executor must stop its pods while containerd runs.
	t.Cleanup(s.Close)
	checkpoint := true
	sched, err := simtest.Subscribe(ctx, s.MasterURL(), wire.Protobuf, mesos.FrameworkInfo{User: "root", Name: "k8sm", Checkpoint: &checkpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sched.Close)
	// The test double's Close SIGKILLs executors: shut ours down first, as
	// a scheduler would, so that it stops its pods and cleans the host.
	t.Cleanup(func() { shutdownExecutor(t, s, sched) })
	exec := taskinfo.NewExecutorInfo(mesos.FrameworkID{Value: sched.FrameworkID}, taskinfo.ExecutorConfig{
		Command:                  filepath.Join(binDir(t), "k8sm-executor"),
		Kubeconfig:               kubeconfig,
		ContainerRuntimeEndpoint: "unix://" + cfg.ContainerdSocket(),
		RootDir:                  filepath.Join(cfg.StateDir, "kubelet-"+execNode),
		ExtraArgs: []string{
			"--tls-cert-file=" + cert, "--tls-private-key-file=" + key, "--client-ca-file=" + pki.CACert(),
			"--kubelet-port=" + strconv.Itoa(freePort(t)),
			"--bind-timeout=20s", "--v=2",
		},
	})
	rt, err := cri.Dial("unix://" + cfg.ContainerdSocket())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return &executorWorld{t: t, ctx: ctx, cfg: cfg, cs: cs, sim: s, sched: sched, exec: exec, rt: rt}
}

func shutdownExecutor(t *testing.T, s *mesossim.Sim, sched *simtest.Scheduler) {
	a := s.Agent(0)
	if a == nil {
		return
	}
	resp, err := http.Get("http://" + a.Endpoint() + "/state")
	if err != nil {
		return
	}
	var st struct {
		Frameworks []struct {
			Executors []struct {
				PID int `json:"pid"`
			} `json:"executors"`
		} `json:"frameworks"`
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || len(st.Frameworks) == 0 || len(st.Frameworks[0].Executors) == 0 {
		return
	}
	pid := st.Frameworks[0].Executors[0].PID
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_SHUTDOWN, Shutdown: &scheduler.Call_Shutdown{
		ExecutorID: mesos.ExecutorID{Value: taskinfo.ExecutorID()}, AgentID: mesos.AgentID{Value: a.ID()}}}); err != nil {
		t.Logf("shutting the executor down: %v", err)
		return
	}
	_ = wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(context.Context) (bool, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		return err != nil || strings.Contains(string(b), ") Z "), nil
	})
}

// pod creates a pod bound to the agent's node, as the scheduler's Binding would.
func (w *executorWorld) pod(name string, hostPort int32, args ...string) *corev1.Pod {
	w.t.Helper()
	grace := int64(3)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.PodSpec{
			NodeName: execNode, SchedulerName: "mesos-scheduler", RestartPolicy: corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name: "web", Image: cluster.WebappImage, ImagePullPolicy: corev1.PullNever, Args: args,
				Env: []corev1.EnvVar{{Name: "POD_NAME", Value: name}},
			}},
		},
	}
	if hostPort != 0 {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: hostPort}}
	}
	p, err := w.cs.CoreV1().Pods("default").Create(w.ctx, p, metav1.CreateOptions{})
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

func (w *executorWorld) launch(p *corev1.Pod) string {
	w.t.Helper()
	data, err := taskinfo.EncodePod(p.DeepCopy())
	if err != nil {
		w.t.Fatal(err)
	}
	ti, err := taskinfo.NewTask(data, mesos.AgentID{}, nil, w.exec)
	if err != nil {
		w.t.Fatal(err)
	}
	w.launchTask(ti)
	return ti.TaskID.Value
}

func (w *executorWorld) launchTask(ti mesos.TaskInfo) {
	w.t.Helper()
	ev, err := w.sched.Next(w.ctx, scheduler.Event_OFFERS)
	if err != nil {
		w.t.Fatal(err)
	}
	o := ev.Offers.Offers[0]
	// The task holds the host ports its pod binds, as the broker's tasks do:
	// the executor refuses any port Mesos did not allocate.
	spec := "cpus:0.1;mem:32"
	if ports := podHostPorts(ti); len(ports) > 0 {
		var rs []string
		for _, p := range ports {
			rs = append(rs, fmt.Sprintf("%d-%d", p, p))
		}
		spec += ";ports:[" + strings.Join(rs, ",") + "]"
	}
	res, err := mesossim.ParseResources(spec)
	if err != nil {
		w.t.Fatal(err)
	}
	ti.AgentID, ti.Resources = o.AgentID, res
	if err := w.sched.MustAccept(w.ctx, &scheduler.Call{Type: scheduler.Call_ACCEPT, Accept: &scheduler.Call_Accept{
		OfferIDs:   []mesos.OfferID{o.ID},
		Operations: []mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH, Launch: &mesos.Offer_Operation_Launch{TaskInfos: []mesos.TaskInfo{ti}}}},
	}}); err != nil {
		w.t.Fatal(err)
	}
}

// podHostPorts are the host ports of the pod a task carries (none when its
// data is not a pod, as for the junk task).
func podHostPorts(ti mesos.TaskInfo) []int32 {
	var p corev1.Pod
	if err := json.Unmarshal(ti.Data, &p); err != nil {
		return nil
	}
	var out []int32
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.HostPort != 0 {
				out = append(out, cp.HostPort)
			}
		}
	}
	return out
}

func (w *executorWorld) update(taskID string, state mesos.TaskState, within time.Duration) *mesos.TaskStatus {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(w.ctx, within)
	defer cancel()
	st, err := awaitTaskState(ctx, w.sched, taskID, state)
	if err != nil {
		var seen []string
		for _, ev := range w.sched.Events() {
			if ev.Type == scheduler.Event_UPDATE && ev.Update.Status.TaskID.Value == taskID {
				seen = append(seen, fmt.Sprintf("%s(%s)", ev.Update.Status.GetState(), ev.Update.Status.GetMessage()))
			}
		}
		w.t.Fatalf("%v; updates of %s: %s\n%s", err, taskID, strings.Join(seen, ", "), w.executorLog())
	}
	return st
}

// awaitTaskState waits for the task's state, acknowledging it and every
// update before it: the agent sends a task's next update only once the
// previous one is acknowledged.
func awaitTaskState(ctx context.Context, s *simtest.Scheduler, taskID string, states ...mesos.TaskState) (*mesos.TaskStatus, error) {
	for {
		ev, err := s.Wait(ctx, func(ev *scheduler.Event) bool {
			return ev.Type == scheduler.Event_UPDATE && ev.Update.Status.TaskID.Value == taskID
		})
		if err != nil {
			return nil, fmt.Errorf("waiting for %v of task %s: %w", states, taskID, err)
		}
		st := &ev.Update.Status
		if err := s.Ack(ctx, st); err != nil {
			return nil, err
		}
		if slices.Contains(states, st.GetState()) {
			return st, nil
		}
	}
}

// executorLog is the tail of the executor's stderr in its sandbox.
func (w *executorWorld) executorLog() string {
	m, _ := filepath.Glob(filepath.Join(w.cfg.StateDir, "mesos", "*", "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*", "stderr"))
	if len(m) == 0 {
		m, _ = filepath.Glob(filepath.Join(w.cfg.StateDir, "mesos", "*", "*", "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*", "stderr"))
	}
	var out []string
	for _, f := range m {
		b, _ := os.ReadFile(f)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 60 {
			lines = lines[len(lines)-60:]
		}
		out = append(out, "== "+f+"\n"+strings.Join(lines, "\n"))
	}
	return strings.Join(out, "\n")
}

func (w *executorWorld) masterTask(taskID string) string {
	w.t.Helper()
	resp, err := http.Get(w.sim.MasterURL() + "/master/tasks")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Tasks []struct{ ID, State string } `json:"tasks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		w.t.Fatal(err)
	}
	for _, t := range out.Tasks {
		if t.ID == taskID {
			return t.State
		}
	}
	return ""
}

func (w *executorWorld) executorPID() int {
	w.t.Helper()
	resp, err := http.Get("http://" + w.sim.Agent(0).Endpoint() + "/state")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Frameworks []struct {
			Executors []struct {
				PID int `json:"pid"`
			} `json:"executors"`
		} `json:"frameworks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		w.t.Fatal(err)
	}
	if len(st.Frameworks) == 0 || len(st.Frameworks[0].Executors) == 0 {
		w.t.Fatal("the agent runs no executor")
	}
	return st.Frameworks[0].Executors[0].PID
}

func (w *executorWorld) running(p *corev1.Pod) int {
	n, err := w.rt.RunningContainers(w.ctx, p.UID)
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *executorWorld) poll(what string, within time.Duration, cond func() (bool, error)) {
	w.t.Helper()
	err := wait.PollUntilContextTimeout(w.ctx, 250*time.Millisecond, within, true, func(context.Context) (bool, error) { return cond() })
	if err != nil {
		w.t.Fatalf("waiting for %s: %v\n%s", what, err, w.executorLog())
	}
}

// in is w for subtest t, so that its failures end the subtest only.
func (w *executorWorld) in(t *testing.T) *executorWorld {
	c := *w
	c.t = t
	return &c
}

func TestExecutorRunsPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	w := startExecutorWorld(t, ctx)

	hostPort := int32(freePortIn(t, 31000, 32000)) // the agent's offered ports
	web := w.pod("web", hostPort)
	webTask := w.launch(web)
	w.update(webTask, mesos.TASK_STARTING, 3*time.Minute)
	w.update(webTask, mesos.TASK_RUNNING, 3*time.Minute)

	t.Run("kubectl shows it Running", func(t *testing.T) {
		w := w.in(t)
		out := kubectl(t, w.cfg, "get", "pod", "web", "-o", "jsonpath={.status.phase} {.spec.nodeName}")
		if out != "Running "+execNode {
			t.Errorf("kubectl get pod web: %q", out)
		}
		node := kubectl(t, w.cfg, "get", "node", execNode, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if node != "True" {
			t.Errorf("node %s Ready=%q", execNode, node)
		}
	})
	t.Run("answers on its host port", func(t *testing.T) {
		w := w.in(t)
		var body string
		w.poll("the webapp on its host port", time.Minute, func() (bool, error) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", hostPort))
			if err != nil {
				return false, nil
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			body = string(b)
			return resp.StatusCode == http.StatusOK, nil
		})
		if !strings.Contains(body, "pod /web") && !strings.Contains(body, "hello from") {
			t.Errorf("webapp answered %q", body)
		}
	})
	t.Run("kubectl logs", func(t *testing.T) {
		w := w.in(t)
		if out := kubectl(t, w.cfg, "logs", "web"); !strings.Contains(out, "serving on") {
			t.Errorf("kubectl logs web: %q", out)
		}
	})
	t.Run("kubectl exec", func(t *testing.T) {
		w := w.in(t)
		if out := kubectl(t, w.cfg, "exec", "web", "--", "sh", "-c", "echo exec-works"); strings.TrimSpace(out) != "exec-works" {
			t.Errorf("kubectl exec: %q", out)
		}
	})

	t.Run("kubectl port-forward", func(t *testing.T) {
		w := w.in(t)
		local := freePort(t)
		cmd := exec.CommandContext(ctx, filepath.Join(w.cfg.BinDir, "kubectl"), "--kubeconfig", w.cfg.PKI().Kubeconfig("admin"),
			"port-forward", "pod/web", fmt.Sprintf("%d:8080", local))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		w.poll("the webapp through port-forward", time.Minute, func() (bool, error) {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", local))
			if err != nil {
				return false, nil
			}
			defer resp.Body.Close()
			return resp.StatusCode == http.StatusOK, nil
		})
	})

	t.Run("exit 1 fails the task and the pod", func(t *testing.T) {
		w := w.in(t)
		crash := w.pod("crash", 0, "--exit-after=1s", "--exit-code=1")
		id := w.launch(crash)
		st := w.update(id, mesos.TASK_FAILED, 2*time.Minute)
		if !strings.Contains(st.GetMessage(), "exited with code 1") {
			t.Errorf("FAILED message %q lacks the exit code", st.GetMessage())
		}
		if out := kubectl(t, w.cfg, "get", "pod", "crash", "-o", "jsonpath={.status.phase}"); out != "Failed" {
			t.Errorf("pod crash is %q, want Failed", out)
		}
	})

	t.Run("bad input fails only its task", func(t *testing.T) {
		w := w.in(t)
		junk := mesos.TaskInfo{Name: "junk", TaskID: mesos.TaskID{Value: "pod.junk"}, Executor: w.exec, Data: []byte("not json")}
		w.launchTask(junk)
		if st := w.update("pod.junk", mesos.TASK_FAILED, time.Minute); !strings.Contains(st.GetMessage(), "not the JSON of a v1.Pod") {
			t.Errorf("message %q", st.GetMessage())
		}
		other := w.pod("elsewhere", 0)
		other.Spec.NodeName = "some-other-node"
		id := w.launch(other)
		if st := w.update(id, mesos.TASK_FAILED, time.Minute); !strings.Contains(st.GetMessage(), "some-other-node") {
			t.Errorf("message %q", st.GetMessage())
		}
		noimg := w.pod("noimage", 0)
		noimg, err := w.cs.CoreV1().Pods("default").Get(ctx, "noimage", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Replace the pod by one whose image is missing (same name, new UID).
		_ = w.cs.CoreV1().Pods("default").Delete(ctx, "noimage", *metav1.NewDeleteOptions(0))
		w.poll("noimage to go", time.Minute, func() (bool, error) {
			_, err := w.cs.CoreV1().Pods("default").Get(ctx, "noimage", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		noimg.ResourceVersion, noimg.UID = "", ""
		noimg.Spec.Containers[0].Image = "k8sm.local/missing:latest"
		noimg, err = w.cs.CoreV1().Pods("default").Create(ctx, noimg, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		id = w.launch(noimg)
		if st := w.update(id, mesos.TASK_FAILED, 2*time.Minute); !strings.Contains(st.GetMessage(), "ErrImageNeverPull") {
			t.Errorf("message %q", st.GetMessage())
		}
		if s := w.masterTask(webTask); s != "TASK_RUNNING" {
			t.Errorf("web's task is %s after the bad input", s)
		}
	})

	t.Run("an executor restarted in place adopts its pods", func(t *testing.T) {
		w := w.in(t)
		before, err := w.cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pid := w.executorPID()
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		// A pod launched now runs only through the new process. One
		// launched while the old process hands over may be lost (the agent
		// says TASK_LOST, as real Mesos does): launch another, as the
		// broker would.
		for i := 0; ; i++ {
			id := w.launch(w.pod(fmt.Sprintf("next-%d", i), 0))
			st, err := awaitTaskState(ctx, w.sched, id, mesos.TASK_RUNNING, mesos.TASK_LOST, mesos.TASK_DROPPED)
			if err != nil {
				t.Fatalf("%v\n%s", err, w.executorLog())
			}
			if st.GetState() == mesos.TASK_RUNNING {
				break
			}
			if i == 3 {
				t.Fatalf("every launch after the restart was lost: %s", st.GetMessage())
			}
		}
		after, err := w.cs.CoreV1().Pods("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.Status.Phase != corev1.PodRunning || after.Status.ContainerStatuses[0].ContainerID != before.Status.ContainerStatuses[0].ContainerID ||
			after.Status.ContainerStatuses[0].RestartCount != 0 {
			t.Errorf("web after the restart: %s %v, before %v", after.Status.Phase, after.Status.ContainerStatuses, before.Status.ContainerStatuses)
		}
		if s := w.masterTask(webTask); s != "TASK_RUNNING" {
			t.Errorf("web's task is %s after the restart", s)
		}
		if w.executorPID() != pid {
			t.Errorf("the agent sees a new executor")
		}
	})

	t.Run("deleting the pod kills the task", func(t *testing.T) {
		w := w.in(t)
		kubectl(t, w.cfg, "delete", "pod", "web", "--wait=false")
		w.update(webTask, mesos.TASK_KILLED, 2*time.Minute)
		if n := w.running(web); n != 0 {
			t.Errorf("%d containers of web still run", n)
		}
	})

	t.Run("an executor whose agent is gone stops its pods", func(t *testing.T) {
		w := w.in(t)
		last := w.pod("last", 0)
		id := w.launch(last)
		w.update(id, mesos.TASK_RUNNING, 2*time.Minute)
		pid := w.executorPID()
		if err := w.sim.KillAgent(0); err != nil {
			t.Fatal(err)
		}
		w.poll("the executor to exit", 2*time.Minute, func() (bool, error) {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return err != nil || strings.Contains(string(b), ") Z "), nil
		})
		if n := w.running(last); n != 0 {
			t.Errorf("%d containers of pod last still run after its executor gave up", n)
		}
		// It leaves the host as it found it: no mounts, no cgroups.
		root := filepath.Join(w.cfg.StateDir, "kubelet-"+execNode)
		if left, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root)); err != nil || len(left) > 0 {
			t.Errorf("mounts under the kubelet root %s remain: %d (%v)", root, len(left), err)
		}
		// Its container's cgroup stays until the agent destroys it (a
		// restarted agent would): the pods' below it are gone.
		if m, _ := filepath.Glob("/sys/fs/cgroup/*" + testCgroupRoot() + "/*/kubelet"); len(m) > 0 {
			t.Errorf("pod cgroups remain: %v", m)
		}
	})
}
