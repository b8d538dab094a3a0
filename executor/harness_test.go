package executor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k8sm/k8sm/executor"
	"github.com/k8sm/k8sm/executor/config"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

const node = "node-1"

// Annotations that tell the fake kubelet how a pod's containers behave.
const (
	annExit    = "test.k8sm.io/exit-code" // the container exits with this code once running
	annWaiting = "test.k8sm.io/waiting"   // the container never starts, waiting with this reason
	annReason  = "test.k8sm.io/reason"    // why the container exited (with annExit; default Error)
)

// fakeKubelet plays the kubelet and the container runtime: it runs the pods
// it is handed (in memory) and writes their status to the fake API server
// as the real kubelet would.
type fakeKubelet struct {
	api *fake.Clientset

	mu      sync.Mutex
	running map[types.UID]bool // containers running now
	starts  map[types.UID]int  // how often the pod's containers were started
	handed  map[types.UID]bool // every pod ever handed to a kubelet
	last    map[types.UID]*v1.Pod
	current map[types.UID]*v1.Pod // the set the kubelet has now
	ports   map[types.UID][]int32 // every host port the pod was ever handed with
}

func newFakeKubelet(api *fake.Clientset) *fakeKubelet {
	return &fakeKubelet{api: api, running: map[types.UID]bool{}, starts: map[types.UID]int{}, handed: map[types.UID]bool{}, last: map[types.UID]*v1.Pod{}, current: map[types.UID]*v1.Pod{}, ports: map[types.UID][]int32{}}
}

func (k *fakeKubelet) Start(ctx context.Context, node string, pods <-chan []*v1.Pod) error {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case set := <-pods:
				k.sync(ctx, set)
			}
		}
	}()
	return nil
}

func (k *fakeKubelet) sync(ctx context.Context, set []*v1.Pod) {
	k.mu.Lock()
	defer k.mu.Unlock()
	in := map[types.UID]bool{}
	k.current = map[types.UID]*v1.Pod{}
	for _, p := range set {
		k.current[p.UID] = p
		in[p.UID] = true
		k.handed[p.UID] = true
		k.last[p.UID] = p
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.HostPort != 0 {
					k.ports[p.UID] = append(k.ports[p.UID], cp.HostPort)
				}
			}
		}
		switch {
		case p.DeletionTimestamp != nil:
			wasRunning := k.running[p.UID]
			k.running[p.UID] = false
			// As the kubelet: a pod deleted in the API server is stopped,
			// its terminal phase written (its containers exit 0 on
			// SIGTERM), and then, on a later sync of a pod it still has,
			// its status manager removes it from the API server.
			live, err := k.api.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
			switch {
			case err != nil || live.DeletionTimestamp == nil:
			case wasRunning && live.Status.Phase != v1.PodSucceeded && live.Status.Phase != v1.PodFailed:
				k.setStatus(ctx, p, v1.PodSucceeded, v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}}, false)
			default:
				_ = k.api.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
		case p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed:
		case p.Annotations[annWaiting] != "":
			k.setStatus(ctx, p, v1.PodPending, v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: p.Annotations[annWaiting], Message: "image not present"}}, false)
		case !k.running[p.UID] && k.starts[p.UID] == 0:
			k.running[p.UID] = true
			k.starts[p.UID]++
			if code := p.Annotations[annExit]; code != "" {
				n, _ := strconv.Atoi(code)
				k.running[p.UID] = false
				reason := p.Annotations[annReason]
				if reason == "" {
					reason = "Error"
				}
				k.setStatus(ctx, p, v1.PodFailed, v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: int32(n), Reason: reason}}, false)
			} else {
				k.setStatus(ctx, p, v1.PodRunning, v1.ContainerState{Running: &v1.ContainerStateRunning{}}, true)
			}
		}
	}
	for uid := range k.running {
		if !in[uid] {
			k.running[uid] = false
		}
	}
}

func (k *fakeKubelet) setStatus(ctx context.Context, p *v1.Pod, phase v1.PodPhase, cs v1.ContainerState, ready bool) {
	live, err := k.api.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		return
	}
	cond := v1.ConditionFalse
	if ready {
		cond = v1.ConditionTrue
	}
	// The fake API server keeps resource versions as they are given; a
	// real one changes it on every write, and the executor relies on that.
	rv, _ := strconv.Atoi(live.ResourceVersion)
	live.ResourceVersion = strconv.Itoa(rv + 1)
	live.Status = v1.PodStatus{Phase: phase, PodIP: "10.88.0.5", PodIPs: []v1.PodIP{{IP: "10.88.0.5"}},
		Conditions:        []v1.PodCondition{{Type: v1.PodReady, Status: cond}},
		ContainerStatuses: []v1.ContainerStatus{{Name: p.Spec.Containers[0].Name, State: cs}}}
	_, _ = k.api.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, live, metav1.UpdateOptions{})
}

func (k *fakeKubelet) RunningContainers(_ context.Context, uid types.UID) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.running[uid] {
		return 1, nil
	}
	return 0, nil
}

func (k *fakeKubelet) ReadySandboxes(ctx context.Context, uid types.UID) (int, error) {
	return k.RunningContainers(ctx, uid)
}

func (k *fakeKubelet) startsOf(uid types.UID) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.starts[uid]
}

// has returns the pod if the kubelet has it now.
func (k *fakeKubelet) has(uid types.UID) *v1.Pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.current[uid]
}

// lastHanded is the pod as the kubelet was last given it.
func (k *fakeKubelet) lastHanded(uid types.UID) *v1.Pod {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.last[uid]
}

// handedPorts are the host ports the pod was ever handed with.
func (k *fakeKubelet) handedPorts(uid types.UID) []int32 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]int32(nil), k.ports[uid]...)
}

func (k *fakeKubelet) wasHanded(uid types.UID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.handed[uid]
}

// env is one test's world: a Mesos sim with one agent, a scheduler playing
// the broker, a fake API server and kubelet.
type env struct {
	t     *testing.T
	ctx   context.Context
	sim   *mesossim.Sim
	sched *simtest.Scheduler
	api   *fake.Clientset
	kube  *fakeKubelet
	exec  mesos.ExecutorInfo
	offer *mesos.Offer
}

func newEnv(t *testing.T, recovery time.Duration) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	res, err := mesossim.ParseResources("cpus:8;mem:8192;ports:[31000-32000]")
	if err != nil {
		t.Fatal(err)
	}
	mc := master.Config{HeartbeatInterval: 300 * time.Millisecond, AllocationInterval: 50 * time.Millisecond, AgentPingTimeout: 5 * time.Second}
	s, err := mesossim.Start(ctx, mesossim.Config{Master: mc, WorkDir: t.TempDir(), Agents: []agent.Config{{
		Hostname: node, Resources: res,
		StatusUpdateRetryInterval:     200 * time.Millisecond,
		ExecutorShutdownGracePeriod:   3 * time.Second,
		ExecutorReregistrationTimeout: time.Second,
		RecoveryTimeout:               recovery,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	checkpoint := true
	sched, err := simtest.Subscribe(ctx, s.MasterURL(), wire.Protobuf, mesos.FrameworkInfo{User: "root", Name: "k8sm-test", Checkpoint: &checkpoint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sched.Close)
	api := fake.NewClientset()
	// The executor process the agent starts is a stand-in that records its
	// environment; the executor under test runs in this test process with it.
	shell := true
	cmd := `env > "$MESOS_SANDBOX/env.tmp" && mv "$MESOS_SANDBOX/env.tmp" "$MESOS_SANDBOX/env" && exec sleep 600`
	fw := mesos.FrameworkID{Value: sched.FrameworkID}
	e := &env{t: t, ctx: ctx, sim: s, sched: sched, api: api, kube: newFakeKubelet(api),
		exec: mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: taskinfo.ExecutorID()}, FrameworkID: &fw,
			Command: &mesos.CommandInfo{Value: &cmd, Shell: &shell}}}
	return e
}

// pod makes a pod bound to node in the fake API server, as the broker and
// scheduler would, and returns it.
func (e *env) pod(name string, ann map[string]string) *v1.Pod {
	e.t.Helper()
	grace := int64(1)
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name), Annotations: ann},
		Spec: v1.PodSpec{NodeName: node, SchedulerName: "mesos-scheduler", TerminationGracePeriodSeconds: &grace,
			RestartPolicy: v1.RestartPolicyNever, Containers: []v1.Container{{Name: "web", Image: "k8sm.local/webapp:latest"}}},
	}
	p, err := e.api.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// task is the pod's task, as the broker makes it.
func (e *env) task(p *v1.Pod) mesos.TaskInfo {
	e.t.Helper()
	data, err := taskinfo.EncodePod(p.DeepCopy())
	if err != nil {
		e.t.Fatal(err)
	}
	ti, err := taskinfo.NewTask(data, mesos.AgentID{}, nil, &e.exec)
	if err != nil {
		e.t.Fatal(err)
	}
	return ti
}

// launch ACCEPTs an offer with the pod's task.
func (e *env) launch(p *v1.Pod) string {
	e.t.Helper()
	ti := e.task(p)
	e.launchTask(ti)
	return ti.TaskID.Value
}

func (e *env) launchTask(ti mesos.TaskInfo) { e.launchTaskWith(ti, "cpus:0.5;mem:64") }

// launchTaskWith launches ti holding resources (--resources text).
func (e *env) launchTaskWith(ti mesos.TaskInfo, resources string) {
	e.t.Helper()
	ev, err := e.sched.Next(e.ctx, scheduler.Event_OFFERS)
	if err != nil {
		e.t.Fatal(err)
	}
	o := ev.Offers.Offers[0]
	res, err := mesossim.ParseResources(resources)
	if err != nil {
		e.t.Fatal(err)
	}
	ti.AgentID = o.AgentID
	ti.Resources = res
	if err := e.sched.MustAccept(e.ctx, &scheduler.Call{Type: scheduler.Call_ACCEPT, Accept: &scheduler.Call_Accept{
		OfferIDs:   []mesos.OfferID{o.ID},
		Operations: []mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH, Launch: &mesos.Offer_Operation_Launch{TaskInfos: []mesos.TaskInfo{ti}}}},
	}}); err != nil {
		e.t.Fatal(err)
	}
}

// mesosEnv waits for the stand-in executor process and reads its environment.
func (e *env) mesosEnv() config.Env {
	e.t.Helper()
	var path string
	for path == "" {
		matches, _ := filepath.Glob(filepath.Join(e.sim.Agent(0).Config().WorkDir, "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*", "env"))
		if len(matches) > 0 {
			path = matches[0]
			break
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatal("the agent did not start the executor")
		case <-time.After(20 * time.Millisecond):
		}
	}
	f, err := os.Open(path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer f.Close()
	vars := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = v
		}
	}
	c, err := config.Parse(func(k string) string { return vars[k] })
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// running is an executor under test.
type running struct {
	cancel  context.CancelFunc
	restart chan struct{}
	done    chan error
}

func (e *env) startExecutor(c config.Env) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, restart: make(chan struct{}, 1), done: make(chan error, 1)}
	go func() {
		r.done <- executor.Run(ctx, executor.Options{Env: c, Client: e.api, Kubelet: e.kube, Runtime: e.kube,
			Restart: r.restart, Poll: 50 * time.Millisecond, BindTimeout: 2 * time.Second, StopTimeout: 2 * time.Second})
	}()
	e.t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
		}
	})
	return r
}

// restartInPlace asks the executor for an in-place restart (SIGHUP) and
// waits until it returned, leaving its pods running for the next process.
func (r *running) restartInPlace(t *testing.T, ctx context.Context) {
	t.Helper()
	r.restart <- struct{}{}
	if err := r.wait(t, ctx); !errors.Is(err, executor.ErrRestart) {
		t.Fatalf("executor returned %v, want ErrRestart", err)
	}
}

func (r *running) wait(t *testing.T, ctx context.Context) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		t.Fatal("the executor did not return")
		return nil
	}
}

// update waits for the task's state at the scheduler, acknowledging it and
// every update before it (the agent sends a task's next update only once
// the previous one is acknowledged, as Mesos does).
func (e *env) update(taskID string, state mesos.TaskState) *mesos.TaskStatus {
	e.t.Helper()
	st, err := awaitState(e.ctx, e.sched, taskID, state)
	if err != nil {
		e.t.Fatalf("%v; updates seen: %s", err, e.seen(taskID))
	}
	return st
}

func awaitState(ctx context.Context, s *simtest.Scheduler, taskID string, state mesos.TaskState) (*mesos.TaskStatus, error) {
	for {
		ev, err := s.Wait(ctx, func(ev *scheduler.Event) bool {
			return ev.Type == scheduler.Event_UPDATE && ev.Update.Status.TaskID.Value == taskID
		})
		if err != nil {
			return nil, fmt.Errorf("waiting for %s of task %s: %w", state, taskID, err)
		}
		st := &ev.Update.Status
		if err := s.Ack(ctx, st); err != nil {
			return nil, err
		}
		if st.GetState() == state {
			return st, nil
		}
	}
}

func (e *env) seen(taskID string) string {
	var out []string
	for _, ev := range e.sched.Events() {
		if ev.Type == scheduler.Event_UPDATE && ev.Update.Status.TaskID.Value == taskID {
			out = append(out, fmt.Sprintf("%s(%s)", ev.Update.Status.GetState(), ev.Update.Status.GetMessage()))
		}
	}
	return strings.Join(out, ", ")
}

// masterTaskState is the task's state as the master's /master/tasks shows it.
func (e *env) masterTaskState(taskID string) string {
	e.t.Helper()
	req, _ := http.NewRequestWithContext(e.ctx, http.MethodGet, e.sim.MasterURL()+"/master/tasks", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Tasks []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"tasks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		e.t.Fatal(err)
	}
	for _, t := range out.Tasks {
		if t.ID == taskID {
			return t.State
		}
	}
	return ""
}

// eventually polls cond until it holds or the test's deadline passes.
func (e *env) eventually(what string, cond func() bool) {
	e.t.Helper()
	for !cond() {
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
