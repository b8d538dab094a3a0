package executor_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/executor/agentconn"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

func (e *env) kill(taskID string) {
	e.t.Helper()
	if err := e.sched.MustAccept(e.ctx, &scheduler.Call{Type: scheduler.Call_KILL, Kill: &scheduler.Call_Kill{TaskID: mesos.TaskID{Value: taskID}}}); err != nil {
		e.t.Fatal(err)
	}
}

// A launched pod goes STARTING then RUNNING (with its address), and KILL
// stops it and ends the task KILLED.
func TestLaunchRunKill(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.pod("web", nil)
	id := e.launch(p)
	e.startExecutor(e.mesosEnv())
	e.update(id, mesos.TASK_STARTING)
	st := e.update(id, mesos.TASK_RUNNING)
	if ips := st.GetContainerStatus().GetNetworkInfos(); len(ips) == 0 || ips[0].IPAddresses[0].GetIPAddress() != "10.88.0.5" {
		t.Errorf("RUNNING does not carry the pod IP: %v", st.GetContainerStatus())
	}
	if len(st.UUID) == 0 || st.GetSource() != mesos.SOURCE_EXECUTOR {
		t.Errorf("update without uuid or not from the executor: %v", st)
	}
	e.kill(id)
	e.update(id, mesos.TASK_KILLED)
	if n, _ := e.kube.RunningContainers(e.ctx, p.UID); n != 0 {
		t.Errorf("the pod still runs after TASK_KILLED")
	}
	e.eventually("the master to show TASK_KILLED", func() bool { return e.masterTaskState(id) == "TASK_KILLED" })
}

// Deleting the pod from the API server ends its task KILLED.
func TestPodDeletedKillsTask(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.pod("doomed", nil)
	id := e.launch(p)
	e.startExecutor(e.mesosEnv())
	e.update(id, mesos.TASK_RUNNING)
	if err := e.api.CoreV1().Pods("default").Delete(e.ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	st := e.update(id, mesos.TASK_KILLED)
	if !strings.Contains(st.GetMessage(), "deleted") {
		t.Errorf("KILLED message %q does not say the pod was deleted", st.GetMessage())
	}
}

// A pod deleted gracefully (deletionTimestamp set, still in the API server)
// is stopped by the kubelet, which writes its terminal phase and only then
// removes it from the API server: the executor must keep handing it to the
// kubelet until then, or the pod stays Terminating forever.
func TestGracefullyDeletedPodIsRemoved(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.pod("graceful", nil)
	id := e.launch(p)
	e.startExecutor(e.mesosEnv())
	e.update(id, mesos.TASK_RUNNING)
	// What the API server does on a graceful delete.
	live, err := e.api.CoreV1().Pods("default").Get(e.ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now, grace := metav1.Now(), int64(2)
	live.DeletionTimestamp, live.DeletionGracePeriodSeconds = &now, &grace
	if _, err := e.api.CoreV1().Pods("default").Update(e.ctx, live, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := e.update(id, mesos.TASK_KILLED)
	if !strings.Contains(st.GetMessage(), "deleted") {
		t.Errorf("KILLED message %q does not say the pod was deleted", st.GetMessage())
	}
	e.eventually("the kubelet to remove the stopped pod from the API server", func() bool {
		_, err := e.api.CoreV1().Pods("default").Get(e.ctx, p.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
}

// The kubelet runs a pod with the host ports k8sm chose for its wildcard
// ports, which the API server's copy has only in an annotation.
func TestWildcardHostPortsReachTheKubelet(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.pod("wild", map[string]string{
		"k8sm.io/wildcard-ports": "true",
		"k8sm.io/host-ports":     `[{"container":"web","containerPort":8080,"protocol":"TCP","hostPort":31007}]`,
	})
	p.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: 8080, Protocol: v1.ProtocolTCP}, {ContainerPort: 9090, Protocol: v1.ProtocolTCP}}
	p, err := e.api.CoreV1().Pods("default").Update(e.ctx, p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := e.launchWithPorts(p, "[31007-31007]")
	e.startExecutor(e.mesosEnv())
	e.update(id, mesos.TASK_RUNNING)
	got := e.kube.lastHanded(p.UID)
	if got == nil {
		t.Fatal("the pod never reached the kubelet")
	}
	ports := got.Spec.Containers[0].Ports
	if ports[0].HostPort != 31007 || ports[1].HostPort != 0 {
		t.Errorf("the kubelet got ports %+v, want 8080 on host port 31007 and 9090 without one", ports)
	}
}

// A pod the executor stopped (its container can never start) stays with the
// kubelet, as deleted, after its task failed and until it is gone from the
// API server: only then can the kubelet write the stopped pod's final
// status (without it a stale one, such as Pending, would stay over the
// Failed the broker wrote).
func TestStoppedPodStaysWithTheKubeletUntilDeleted(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.pod("noconfig", map[string]string{annWaiting: "CreateContainerConfigError"})
	id := e.launch(p)
	e.startExecutor(e.mesosEnv())
	e.update(id, mesos.TASK_FAILED)
	// The broker marks the pod Failed; the kubelet must be told.
	live, err := e.api.CoreV1().Pods("default").Get(e.ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live.ResourceVersion = "1000"
	live.Status.Phase = v1.PodFailed
	if _, err := e.api.CoreV1().Pods("default").UpdateStatus(e.ctx, live, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the kubelet to have the stopped pod as the API server has it", func() bool {
		k := e.kube.has(p.UID)
		return k != nil && k.DeletionTimestamp != nil && k.Status.Phase == v1.PodFailed
	})
	if err := e.api.CoreV1().Pods("default").Delete(e.ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the kubelet to let the deleted pod go", func() bool { return e.kube.has(p.UID) == nil })
}

// A running pod that the broker ends (its task was lost while the agent was
// away) stays with the kubelet as the API server has it, Failed: dropped,
// the kubelet would write its older Running phase over Failed.
func TestPodEndedByTheBrokerStaysWithTheKubelet(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.pod("lost", nil)
	id := e.launch(p)
	e.startExecutor(e.mesosEnv())
	e.update(id, mesos.TASK_RUNNING)
	live, err := e.api.CoreV1().Pods("default").Get(e.ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live.ResourceVersion = "1000"
	live.Status.Phase, live.Status.Reason = v1.PodFailed, "MesosTaskLost"
	if _, err := e.api.CoreV1().Pods("default").UpdateStatus(e.ctx, live, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.update(id, mesos.TASK_FAILED)
	e.eventually("the kubelet to have the pod as Failed", func() bool {
		k := e.kube.has(p.UID)
		return k != nil && k.Status.Phase == v1.PodFailed
	})
	time.Sleep(2 * time.Second)
	if k := e.kube.has(p.UID); k == nil {
		t.Fatal("the kubelet was told to forget the ended pod while it is still in the API server")
	}
}

// A container that exits 1 fails its task with the exit code in the message.
func TestContainerExitFails(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	id := e.launch(e.pod("crash", map[string]string{annExit: "1"}))
	e.startExecutor(e.mesosEnv())
	st := e.update(id, mesos.TASK_FAILED)
	if !strings.Contains(st.GetMessage(), "exited with code 1") {
		t.Errorf("FAILED message %q lacks the exit code", st.GetMessage())
	}
	if st.GetReason() != mesos.REASON_COMMAND_EXECUTOR_FAILED {
		t.Errorf("FAILED with reason %s, want REASON_COMMAND_EXECUTOR_FAILED", st.GetReason())
	}
}

// A container the OOM killer ended fails its task with Mesos' reason for a
// task that outgrew its memory, and the container's reason in the message.
func TestOOMKilledContainerFails(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	id := e.launch(e.pod("hog", map[string]string{annExit: "137", annReason: "OOMKilled"}))
	e.startExecutor(e.mesosEnv())
	st := e.update(id, mesos.TASK_FAILED)
	if st.GetReason() != mesos.REASON_CONTAINER_LIMITATION_MEMORY || !strings.Contains(st.GetMessage(), "OOMKilled") {
		t.Errorf("FAILED with reason %s, message %q; want REASON_CONTAINER_LIMITATION_MEMORY and OOMKilled in the message", st.GetReason(), st.GetMessage())
	}
}

// Bad input fails the task with a message saying what was wrong, and the
// executor keeps serving its other pods.
func TestBadInput(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	good := e.launch(e.pod("good", nil))
	e.startExecutor(e.mesosEnv())
	e.update(good, mesos.TASK_RUNNING)

	notPod := mesos.TaskInfo{Name: "junk", TaskID: mesos.TaskID{Value: "pod.junk"}, Executor: &e.exec, Data: []byte(`{"kind":"Deployment","metadata":{"name":"x"}}`)}
	e.launchTask(notPod)
	if st := e.update("pod.junk", mesos.TASK_FAILED); !strings.Contains(st.GetMessage(), "not a Pod") && !strings.Contains(st.GetMessage(), "carries no pod") {
		t.Errorf("message %q does not say the data is not a pod", st.GetMessage())
	}

	other := e.pod("elsewhere", nil)
	other.Spec.NodeName = "node-2"
	id := e.launch(other)
	if st := e.update(id, mesos.TASK_FAILED); !strings.Contains(st.GetMessage(), `"node-2"`) {
		t.Errorf("message %q does not name the other node", st.GetMessage())
	}
	if e.kube.wasHanded(other.UID) {
		t.Error("a pod for another node reached the kubelet")
	}

	missing := e.pod("noimage", map[string]string{annWaiting: "ErrImageNeverPull"})
	id = e.launch(missing)
	if st := e.update(id, mesos.TASK_FAILED); !strings.Contains(st.GetMessage(), "ErrImageNeverPull") {
		t.Errorf("message %q does not say the image is missing", st.GetMessage())
	}

	if s := e.masterTaskState(good); s != "TASK_RUNNING" {
		t.Errorf("the good pod's task is %s after the bad input, want TASK_RUNNING", s)
	}
	e.kill(good)
	e.update(good, mesos.TASK_KILLED)
}

// The kubelet runs only launched pods: a pod bound to the node by someone
// else never reaches it, and a LAUNCH that arrives before its pod is
// visible is held, not failed.
func TestOnlyLaunchedPodsRun(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	stray := e.pod("stray", nil)
	early := e.pod("early", nil)
	if err := e.api.CoreV1().Pods("default").Delete(e.ctx, early.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	id := e.launch(early)
	e.startExecutor(e.mesosEnv())
	e.eventually("the task to be held", func() bool { return e.masterTaskState(id) == "TASK_STAGING" })
	// Its Binding becomes visible now.
	if _, err := e.api.CoreV1().Pods("default").Create(e.ctx, early, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.update(id, mesos.TASK_STARTING)
	e.update(id, mesos.TASK_RUNNING)
	if e.kube.wasHanded(stray.UID) {
		t.Error("a pod bound to the node but never launched reached the kubelet")
	}
}

// SHUTDOWN stops every pod, reports them KILLED, and the executor returns.
func TestShutdown(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	a, b := e.launch(e.pod("a", nil)), e.launch(e.pod("b", nil))
	r := e.startExecutor(e.mesosEnv())
	e.update(a, mesos.TASK_RUNNING)
	e.update(b, mesos.TASK_RUNNING)
	if err := e.sched.MustAccept(e.ctx, &scheduler.Call{Type: scheduler.Call_SHUTDOWN, Shutdown: &scheduler.Call_Shutdown{
		ExecutorID: e.exec.ExecutorID, AgentID: mesos.AgentID{Value: e.sim.Agent(0).ID()}}}); err != nil {
		t.Fatal(err)
	}
	e.update(a, mesos.TASK_KILLED)
	e.update(b, mesos.TASK_KILLED)
	if err := r.wait(t, e.ctx); err != nil {
		t.Errorf("executor returned %v after SHUTDOWN, want nil", err)
	}
}

// An executor restarted in place adopts its running pods: the task stays
// RUNNING, the pod is not started twice, and the new process can kill it.
func TestRestartAdoptsPods(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.pod("keep", nil)
	id := e.launch(p)
	c := e.mesosEnv()
	r := e.startExecutor(c)
	e.update(id, mesos.TASK_RUNNING)
	r.restartInPlace(t, e.ctx)
	if n, _ := e.kube.RunningContainers(e.ctx, p.UID); n != 1 {
		t.Fatal("the restart stopped the pod")
	}
	e.startExecutor(c)
	// A pod launched now runs only if the new process subscribed.
	next := e.launch(e.pod("next", nil))
	e.update(next, mesos.TASK_RUNNING)
	if s := e.masterTaskState(id); s != "TASK_RUNNING" {
		t.Errorf("task is %s after the restart, want TASK_RUNNING", s)
	}
	if n := e.kube.startsOf(p.UID); n != 1 {
		t.Errorf("the pod was started %d times", n)
	}
	e.kill(id)
	e.update(id, mesos.TASK_KILLED)
}

// An executor whose agent stays away longer than the recovery timeout stops
// its pods and returns; one whose agent comes back in time carries on.
func TestAgentGone(t *testing.T) {
	e := newEnv(t, 3*time.Second)
	p := e.pod("orphan", nil)
	id := e.launch(p)
	r := e.startExecutor(e.mesosEnv())
	e.update(id, mesos.TASK_RUNNING)

	// Back in time: nothing changes.
	if err := e.sim.RestartAgent(0); err != nil {
		t.Fatal(err)
	}
	q := e.pod("after-restart", nil)
	id2 := e.launch(q)
	e.update(id2, mesos.TASK_RUNNING)

	if err := e.sim.KillAgent(0); err != nil {
		t.Fatal(err)
	}
	err := r.wait(t, e.ctx)
	if !errors.Is(err, agentconn.ErrAgentGone) {
		t.Fatalf("executor returned %v, want ErrAgentGone", err)
	}
	for _, uid := range []string{string(p.UID), string(q.UID)} {
		if n, _ := e.kube.RunningContainers(e.ctx, p.UID); n != 0 {
			t.Errorf("pod %s still runs after its executor gave up", uid)
		}
	}
}

// TestLaterAttemptOfAHeldPodRuns: a pod's first launch attempt is held
// (its Binding not visible yet; the scheduler's Launch failed, or its answer
// was lost) when a second attempt of the same pod arrives. Both are held;
// the pod runs as the attempt its Binding names (k8sm.io/task-id), and the
// other ends without reaching the kubelet.
func TestLaterAttemptOfAHeldPodRuns(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.pod("web", nil)
	if err := e.api.CoreV1().Pods("default").Delete(e.ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	attempt := func(id string) mesos.TaskInfo {
		data, err := taskinfo.EncodePod(p.DeepCopy())
		if err != nil {
			t.Fatal(err)
		}
		data.Attempt = id
		ti, err := taskinfo.NewTask(data, mesos.AgentID{}, nil, &e.exec)
		if err != nil {
			t.Fatal(err)
		}
		return ti
	}
	first, second := attempt("r-1"), attempt("r-2")
	// One ACCEPT: the second attempt arrives while the first is held.
	ev, err := e.sched.Next(e.ctx, scheduler.Event_OFFERS)
	if err != nil {
		t.Fatal(err)
	}
	o := ev.Offers.Offers[0]
	res, err := mesossim.ParseResources("cpus:0.25;mem:32")
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range []*mesos.TaskInfo{&first, &second} {
		ti.AgentID, ti.Resources = o.AgentID, res
	}
	if err := e.sched.MustAccept(e.ctx, &scheduler.Call{Type: scheduler.Call_ACCEPT, Accept: &scheduler.Call_Accept{
		OfferIDs:   []mesos.OfferID{o.ID},
		Operations: []mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH, Launch: &mesos.Offer_Operation_Launch{TaskInfos: []mesos.TaskInfo{first, second}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	e.startExecutor(e.mesosEnv())
	e.eventually("both attempts to be held", func() bool {
		return e.masterTaskState(first.TaskID.Value) == "TASK_STAGING" && e.masterTaskState(second.TaskID.Value) == "TASK_STAGING"
	})

	bound := p.DeepCopy()
	bound.ResourceVersion, bound.UID = "", p.UID
	bound.Annotations = map[string]string{taskinfo.TaskIDAnnotation: second.TaskID.Value}
	if _, err := e.api.CoreV1().Pods("default").Create(e.ctx, bound, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.update(second.TaskID.Value, mesos.TASK_RUNNING)
	if st := e.update(first.TaskID.Value, mesos.TASK_FAILED); !strings.Contains(st.GetMessage(), second.TaskID.Value) {
		t.Errorf("the first attempt ended with %q, want it to name the attempt that runs", st.GetMessage())
	}
}
