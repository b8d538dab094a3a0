package pods

import (
	"context"
	"fmt"
	"math"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/broker/metrics"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// ReasonTaskLaunchTimeout is the reason of a pod whose task the broker
// killed because it was not started within --task-launch-timeout.
const ReasonTaskLaunchTimeout = "MesosTaskLaunchTimeout"

// DefaultLaunchTimeout is Marathon's task_launch_timeout default (300 s).
const DefaultLaunchTimeout = 5 * time.Minute

// KillReasonLaunchTimeout labels the KILLs of tasks not started in time
// (k8sm_broker_task_kills_total).
const KillReasonLaunchTimeout = "launch-timeout"

// The launch timeout gives up on a task that Mesos keeps in TASK_STAGING —
// the agent still fetching the executor, an executor that never subscribes,
// an agent that queued the task and forgot it — as Marathon does after its
// task_launch_timeout: the task is KILLed and, once Mesos says it ended, its
// pod fails (ReasonTaskLaunchTimeout) so that its controller replaces it.
// Without it such a pod stays bound and Pending for ever: reconciliation
// only ever answers TASK_STAGING.
//
// The clock stops at the first status from the executor (TASK_STARTING):
// k8sm's executor sends it when it hands the pod to its kubelet, and
// TASK_RUNNING only once the pod is Ready. Marathon's TASK_RUNNING means the
// command started, which is k8sm's TASK_STARTING; what follows is the
// kubelet's business (a pod running but not Ready is never killed in
// Kubernetes, and the executor fails a pod stuck pulling its image itself,
// after its --image-pull-timeout).
//
// The deadline is the pod's binding time (its PodScheduled condition) plus
// the timeout. The scheduler plugin binds right after the broker's ACCEPT
// was answered, so that is the launch time within one bind, and it lives in
// the API server: a broker that takes over computes the same deadline and
// acts on it at once, where a clock started by each new leader (or at the
// first status it hears, whose timestamp is that of the master's answer to
// reconciliation, not of the launch) would let a stuck task live for ever
// across repeated failovers.
//
// The pod is failed only once Mesos reports the task terminal (TASK_KILLED,
// or gone), never when the KILL is sent: until then the task may still
// start, and a pod failed earlier would be replaced — a StatefulSet identity
// recreated — beside a live task. A TASK_STARTING or TASK_RUNNING that
// arrives after the KILL does not save the task: the KILL is sent again
// (the pod is already on its way out), so the end is the same whichever
// arrives first.
type launchTimeouts struct {
	mu sync.Mutex
	// state is the latest live state heard of each task (forgotten when it
	// ends). A task this process launched is heard of first when it starts:
	// Mesos sends no TASK_STAGING update, only answers reconciliation with
	// it.
	state map[string]mesos.TaskState
	// asked is when the master was last asked about a task past its
	// deadline whose state this process does not know.
	asked map[string]time.Time
	// killed are the tasks killed for the timeout, until their end was
	// applied and endedTTL passed.
	killed map[string]launchKill
}

// launchKill is a KILL for the launch timeout.
type launchKill struct {
	agent, node string
	bound       time.Time
	at          time.Time
	// endedAt is when the task's end was heard (zero while live).
	endedAt time.Time
	// told: a KILL went through and the event, log and metric said so.
	told bool
}

func newLaunchTimeouts() launchTimeouts {
	return launchTimeouts{state: map[string]mesos.TaskState{}, asked: map[string]time.Time{}, killed: map[string]launchKill{}}
}

// launchRecheck is how often the deadlines are checked, and how long a
// question to the master or a KILL is given before it is asked or sent
// again: a quarter of the timeout, at most 30 s.
func (c *Controller) launchRecheck() time.Duration {
	d := c.cfg.LaunchTimeout / 4
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	return d
}

// launchDeadline is when the task of a bound, live pod must have started;
// false when no deadline applies (timeout disabled, pod not bound, ended or
// being deleted: deletion kills its task anyway).
func (c *Controller) launchDeadline(p *v1.Pod) (time.Time, bool) {
	if c.cfg.LaunchTimeout <= 0 || p.Spec.NodeName == "" || p.DeletionTimestamp != nil ||
		p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		return time.Time{}, false
	}
	return boundAt(p).Add(c.cfg.LaunchTimeout), true
}

// runLaunchTimeouts checks the deadlines every launchRecheck until ctx ends.
func (c *Controller) runLaunchTimeouts(ctx context.Context) {
	if c.cfg.LaunchTimeout <= 0 {
		return
	}
	t := c.cfg.Clock.NewTicker(c.launchRecheck())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			c.checkLaunches(ctx)
		}
	}
}

// checkLaunches kills the tasks known to be TASK_STAGING past their pod's
// deadline, sends again the KILLs of those still not ended, and asks the
// master about those past it whose state this process does not know (a
// task it launched itself, or one it has not heard of since it took over):
// the answer comes to TaskStatus, which kills a task still staging.
func (c *Controller) checkLaunches(ctx context.Context) {
	// Bounded as a sync is: what is left is done at the next check.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	logger := klog.FromContext(ctx)
	now := c.cfg.Clock.Now()
	recheck := c.launchRecheck()
	ask := map[string]string{}
	for _, obj := range c.informer.GetStore().List() {
		p := obj.(*v1.Pod)
		deadline, ok := c.launchDeadline(p)
		if !ok || now.Before(deadline) {
			continue
		}
		task := taskinfo.PodTaskID(p)
		c.lt.mu.Lock()
		state, known := c.lt.state[task]
		k, killed := c.lt.killed[task]
		// Within BoundGrace the launch may still be on its way to the
		// master, which would answer that it has no such task (a timeout
		// shorter than that is asked about only after it).
		askNow := !known && !killed && now.Sub(c.lt.asked[task]) >= recheck && now.Sub(boundAt(p)) >= c.cfg.BoundGrace
		if askNow {
			c.lt.asked[task] = now
		}
		c.lt.mu.Unlock()
		switch {
		case killed:
			if k.endedAt.IsZero() && now.Sub(k.at) >= recheck {
				c.killLaunch(ctx, p, task, k.agent, "")
			}
		case known && state == mesos.TASK_STAGING:
			c.killLaunch(ctx, p, task, "", state.String())
		case askNow:
			ask[task] = c.agentOfNode(p.Spec.NodeName)
		}
	}
	if len(ask) == 0 {
		return
	}
	if err := c.cfg.Framework.ReconcileTasks(ctx, ask); err != nil {
		logger.Error(err, "Asking the master about tasks past their launch deadline; asking again later", "tasks", len(ask))
		return
	}
	logger.V(2).Info("Asked the master about tasks past their launch deadline", "tasks", len(ask), "timeout", c.cfg.LaunchTimeout)
}

// launchStatus notes a live status of a pod's task, and kills the task if it
// is the attempt the pod runs as, still TASK_STAGING past its deadline, or
// one already killed for the timeout that started meanwhile (the KILL wins).
func (c *Controller) launchStatus(ctx context.Context, pod *v1.Pod, st *mesos.TaskStatus) {
	if c.cfg.LaunchTimeout <= 0 {
		return
	}
	task, state := st.TaskID.Value, st.GetState()
	c.lt.mu.Lock()
	c.lt.state[task] = state
	k, killed := c.lt.killed[task]
	c.lt.mu.Unlock()
	if killed && k.endedAt.IsZero() {
		if state != mesos.TASK_STAGING {
			// Started after all: the pod is on its way out already.
			c.killLaunch(ctx, pod, task, st.AgentID.GetValue(), "")
		}
		return
	}
	if state != mesos.TASK_STAGING || taskinfo.PodTaskID(pod) != task {
		return
	}
	if deadline, ok := c.launchDeadline(pod); ok && !c.cfg.Clock.Now().Before(deadline) {
		c.killLaunch(ctx, pod, task, st.AgentID.GetValue(), state.String())
	}
}

// launchEnded forgets the live state of a task that ended, and marks the
// end of one killed for the timeout.
func (c *Controller) launchEnded(task string) {
	c.lt.mu.Lock()
	defer c.lt.mu.Unlock()
	delete(c.lt.state, task)
	delete(c.lt.asked, task)
	if k, ok := c.lt.killed[task]; ok && k.endedAt.IsZero() {
		k.endedAt = c.cfg.Clock.Now()
		c.lt.killed[task] = k
	}
}

// pruneLaunches forgets the ends of killed tasks older than endedTTL (the
// end of the attempt is kept as long, for sync to end the pod again).
func (c *Controller) pruneLaunches() {
	now := c.cfg.Clock.Now()
	c.lt.mu.Lock()
	defer c.lt.mu.Unlock()
	for id, k := range c.lt.killed {
		if !k.endedAt.IsZero() && now.Sub(k.endedAt) > endedTTL {
			delete(c.lt.killed, id)
		}
	}
	// A pod deleted before its task's end was heard leaves its question.
	for id, at := range c.lt.asked {
		if now.Sub(at) > endedTTL {
			delete(c.lt.asked, id)
		}
	}
}

// killLaunch kills a pod's task for the launch timeout; state, when not
// empty, is the state it was last reported in (a first KILL: event, log,
// metric).
func (c *Controller) killLaunch(ctx context.Context, pod *v1.Pod, task, agentID, state string) {
	logger := klog.FromContext(ctx)
	if agentID == "" {
		agentID = c.agentOfNode(pod.Spec.NodeName)
	}
	now := c.cfg.Clock.Now()
	c.lt.mu.Lock()
	k, ok := c.lt.killed[task]
	if !ok {
		k = launchKill{agent: agentID, node: pod.Spec.NodeName, bound: boundAt(pod)}
	}
	if agentID != "" {
		k.agent = agentID
	}
	k.at = now
	c.lt.killed[task] = k
	c.lt.mu.Unlock()
	if err := c.cfg.Framework.KillTask(ctx, task, k.agent, KillReasonLaunchTimeout); err != nil {
		// Sent again at the next check (killed is set).
		logger.Error(err, "Killing a task not started within the launch timeout; trying again", "pod", klog.KObj(pod), "task", task, "agent", k.agent)
		return
	}
	c.lt.mu.Lock()
	k = c.lt.killed[task]
	again := k.told
	k.told = true
	c.lt.killed[task] = k
	c.lt.mu.Unlock()
	if again {
		logger.V(2).Info("Killing again a task killed for the launch timeout", "pod", klog.KObj(pod), "task", task, "agent", k.agent)
		return
	}
	metrics.TaskLaunchTimeouts.Inc()
	logger.Info("Killing a task not started within the launch timeout", "pod", klog.KObj(pod), "task", task, "agent", k.agent,
		"node", pod.Spec.NodeName, "state", state, "boundAt", k.bound, "timeout", c.cfg.LaunchTimeout)
	c.recorder.Eventf(pod, v1.EventTypeWarning, ReasonTaskLaunchTimeout,
		"Mesos task %s was still %s on agent %s (node %s) %s after the pod was bound (--task-launch-timeout): killing it; the pod fails once Mesos reports the task ended, and its controller replaces it. Check the agent's log and the executor's sandbox (fetching the executor, the executor registering).",
		task, state, k.agent, pod.Spec.NodeName, c.cfg.LaunchTimeout)
}

// launchTimedOut reports whether a terminal status ends a task killed for
// the launch timeout, and says so for the pod. A KILL sent by an earlier
// broker process is recognised by the agent's reason for a task killed
// before its executor had it (TASK_KILLED, REASON_TASK_KILLED_DURING_LAUNCH)
// on the attempt of a live pod past its deadline: the broker kills such a
// task for no other reason (deleted pods, other attempts and orphans are
// killed as such, and do not end a live pod).
func (c *Controller) launchTimedOut(pod *v1.Pod, st *mesos.TaskStatus) (string, bool) {
	task := st.TaskID.Value
	c.lt.mu.Lock()
	k, ok := c.lt.killed[task]
	c.lt.mu.Unlock()
	if !ok {
		deadline, live := c.launchDeadline(pod)
		if !live || st.GetState() != mesos.TASK_KILLED || st.Reason == nil || *st.Reason != mesos.REASON_TASK_KILLED_DURING_LAUNCH {
			return "", false
		}
		// When the agent killed it (a resent status is older than its
		// handling), on the broker's clock if it does not say.
		at := c.cfg.Clock.Now()
		if ts := st.GetTimestamp(); ts > 0 {
			sec, frac := math.Modf(ts)
			if t := time.Unix(int64(sec), int64(frac*1e9)); t.Before(at) {
				at = t
			}
		}
		if at.Before(deadline) {
			return "", false
		}
		k = launchKill{agent: st.AgentID.GetValue(), node: pod.Spec.NodeName, bound: boundAt(pod)}
	}
	msg := fmt.Sprintf("Mesos task %s was not started on agent %s (node %s) within %s of the pod's binding (--task-launch-timeout): the broker killed it and Mesos reports it %s",
		task, k.agent, k.node, c.cfg.LaunchTimeout, st.GetState())
	if r := st.Reason; r != nil {
		msg += " (" + r.String() + ")"
	}
	msg += ". Check the agent's log and the executor's sandbox: fetching the executor (its URIs, the fetcher cache) and the executor registering with the agent."
	return msg, true
}
