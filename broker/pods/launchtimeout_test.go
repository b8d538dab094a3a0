package pods

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// launchEnv is pod web-0 on node n1 (agent-1), bound at the fake clock's
// now as attempt r-1, and a controller over it with a 5-minute launch
// timeout.
func launchEnv(t *testing.T) (*Controller, *killRecorder, *fake.Clientset, *testingclock.FakeClock, string) {
	t.Helper()
	clk := testingclock.NewFakeClock(time.Now())
	task := taskinfo.TaskID("u1", "r-1")
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", UID: "u1", Annotations: map[string]string{taskinfo.TaskIDAnnotation: task}},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: "n1"},
		Status: v1.PodStatus{Phase: v1.PodPending, Conditions: []v1.PodCondition{
			{Type: v1.PodScheduled, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(clk.Now())}}}}
	client := fake.NewSimpleClientset(p, &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1",
		Annotations: map[string]string{taskinfo.AgentIDAnnotation: "agent-1"}}})
	fw := &killRecorder{}
	c := New(Config{Client: client, SchedulerName: "mesos-scheduler", Framework: fw, BoundGrace: -1, LaunchTimeout: 5 * time.Minute, Clock: clk,
		AgentHostname: func(string) (string, bool) { return "n1", true }})
	run(t, c)
	return c, fw, client, clk, task
}

func launchKills(fw *killRecorder) int {
	n := 0
	for _, k := range fw.killed() {
		if strings.HasSuffix(k, "/"+KillReasonLaunchTimeout) {
			n++
		}
	}
	return n
}

// TestStagingBeforeDeadlineIsKept: a task reported TASK_STAGING before its
// deadline is left alone; the same answer past it kills the task, and the
// pod stays as it is until Mesos reports the task ended.
func TestStagingBeforeDeadlineIsKept(t *testing.T) {
	c, fw, client, clk, task := launchEnv(t)
	ctx := context.Background()
	clk.Step(4 * time.Minute)
	if err := c.TaskStatus(ctx, status(task, mesos.TASK_STAGING)); err != nil {
		t.Fatal(err)
	}
	if n := launchKills(fw); n != 0 {
		t.Fatalf("killed before the deadline: %v", fw.killed())
	}
	clk.Step(time.Minute + time.Second)
	if err := c.TaskStatus(ctx, status(task, mesos.TASK_STAGING)); err != nil {
		t.Fatal(err)
	}
	if want := task + "@agent-1/" + KillReasonLaunchTimeout; !slices.Contains(fw.killed(), want) {
		t.Fatalf("kills %v, want %s", fw.killed(), want)
	}
	if got := phase(t, client); got != v1.PodPending {
		t.Errorf("pod %s once its task was killed, before Mesos said it ended; want Pending", got)
	}
}

// TestStartedAfterKillIsKilledAgain: the KILL wins over a TASK_RUNNING that
// arrives after it (the task is killed again, the pod is not kept), and the
// pod fails with the launch-timeout reason once the task is TASK_KILLED.
func TestStartedAfterKillIsKilledAgain(t *testing.T) {
	c, fw, client, clk, task := launchEnv(t)
	ctx := context.Background()
	clk.Step(6 * time.Minute)
	if err := c.TaskStatus(ctx, status(task, mesos.TASK_STAGING)); err != nil {
		t.Fatal(err)
	}
	if err := c.TaskStatus(ctx, status(task, mesos.TASK_RUNNING)); err != nil {
		t.Fatal(err)
	}
	if n := launchKills(fw); n != 2 {
		t.Fatalf("kills %v: want the task killed again once it reported TASK_RUNNING", fw.killed())
	}
	if got := phase(t, client); got == v1.PodFailed {
		t.Fatal("pod failed before its task ended")
	}
	if err := c.TaskStatus(ctx, status(task, mesos.TASK_KILLED)); err != nil {
		t.Fatal(err)
	}
	p := wantLaunchTimeoutFailure(t, client)
	for _, want := range []string{task, "agent-1", "n1", "5m0s", "TASK_KILLED"} {
		if !strings.Contains(p.Status.Message, want) {
			t.Errorf("message %q does not name %s", p.Status.Message, want)
		}
	}
}

// TestKillOfAnEarlierBrokerNamed: a broker that took over after the KILL was
// sent (it remembers nothing of it) still says why the pod failed: a task
// killed during launch past its pod's deadline.
func TestKillOfAnEarlierBrokerNamed(t *testing.T) {
	c, _, client, clk, task := launchEnv(t)
	ctx := context.Background()
	clk.Step(6 * time.Minute)
	st := status(task, mesos.TASK_KILLED)
	st.Reason = mesos.REASON_TASK_KILLED_DURING_LAUNCH.Enum()
	if err := c.TaskStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	wantLaunchTimeoutFailure(t, client)
}

// TestStartingStopsTheClock: a task its executor reported TASK_STARTING (the
// pod handed to the kubelet, which may pull images or wait for readiness
// for long) is never killed for the launch timeout, however late.
func TestStartingStopsTheClock(t *testing.T) {
	c, fw, client, clk, task := launchEnv(t)
	ctx := context.Background()
	if err := c.TaskStatus(ctx, status(task, mesos.TASK_STARTING)); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Hour)
	c.checkLaunches(ctx)
	if err := c.TaskStatus(ctx, status(task, mesos.TASK_STARTING)); err != nil {
		t.Fatal(err)
	}
	if n := launchKills(fw); n != 0 {
		t.Errorf("a started task was killed: %v", fw.killed())
	}
	if got := phase(t, client); got == v1.PodFailed {
		t.Errorf("pod of a started task failed")
	}
}

// wantLaunchTimeoutFailure reads web-0 and wants it Failed for the launch
// timeout.
func wantLaunchTimeoutFailure(t *testing.T, client *fake.Clientset) *v1.Pod {
	t.Helper()
	p, err := client.CoreV1().Pods("default").Get(context.Background(), "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != v1.PodFailed || p.Status.Reason != ReasonTaskLaunchTimeout {
		t.Errorf("pod %s/%s (%s), want Failed/%s", p.Status.Phase, p.Status.Reason, p.Status.Message, ReasonTaskLaunchTimeout)
	}
	return p
}
