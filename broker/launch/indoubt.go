package launch

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Backoff of the reconciliation that settles tasks in doubt: a master too
// loaded to answer is not asked again at once, nor left alone for long.
const (
	inDoubtFirstRetry = time.Second
	inDoubtMaxRetry   = 30 * time.Second
)

// inDoubt are the tasks of ACCEPTs whose outcome Mesos has not told: the
// call got no answer and neither did the reconciliation that asked about
// its tasks (a master too loaded to answer within the timeouts). Such a
// task may run, and Mesos may tell of it only much later: until it has
// said, for each, whether it has the task, a Launch of its pod launches
// nothing beside it (refuseInDoubt).
type inDoubt struct {
	mu    sync.Mutex
	tasks map[string]*doubt // by task id
}

// doubt is one task in doubt.
type doubt struct {
	uid     types.UID
	agentID string
	// killed is when a Launch last asked Mesos to kill it (zero: never).
	killed time.Time
	// wake cuts short the wait before its ACCEPT's next reconciliation: a
	// kill was just sent, and its status or the master's answer to it
	// settles the task.
	wake chan struct{}
}

func newInDoubt() *inDoubt {
	return &inDoubt{tasks: map[string]*doubt{}}
}

func poke(wake chan struct{}) {
	select {
	case wake <- struct{}{}:
	default:
	}
}

// recordInDoubt records the tasks of an ACCEPT on agentID whose outcome is
// unknown and has Mesos settle them in the background.
func (l *Launcher) recordInDoubt(agentID string, taskIDs []string) {
	d := l.doubts
	wake := make(chan struct{}, 1)
	d.mu.Lock()
	for _, id := range taskIDs {
		d.tasks[id] = &doubt{uid: taskinfo.PodUID(id), agentID: agentID, wake: wake}
	}
	d.mu.Unlock()
	klog.InfoS("ACCEPT outcome unknown: Mesos answered neither the call nor the reconciliation of its tasks; they may run, and their pods launch nothing beside them until Mesos has told", "agent", agentID, "tasks", taskIDs)
	go l.settleInDoubt(agentID, taskIDs, wake)
}

// settleInDoubt reconciles the tasks in doubt on agentID, with backoff,
// until Mesos has told of each: one it has (TASK_STAGING, TASK_RUNNING, …)
// is an ordinary earlier attempt of its pod from then on (PodTasks), which
// a Launch adopts or kills; one it does not have (TASK_UNKNOWN, TASK_LOST,
// TASK_DROPPED, TASK_GONE), or that ended (a kill), blocks nothing.
func (l *Launcher) settleInDoubt(agentID string, taskIDs []string, wake chan struct{}) {
	wait := inDoubtFirstRetry
	for {
		pending := l.unsettled(taskIDs)
		if len(pending) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.SettleTimeout)
		known, err := l.mesos.Settle(ctx, agentID, pending)
		cancel()
		l.settled(agentID, known)
		if len(l.unsettled(pending)) == 0 {
			return
		}
		klog.V(2).InfoS("Tasks still in doubt: Mesos has not told of them; asking again", "agent", agentID, "tasks", pending, "in", wait, "err", err)
		select {
		case <-l.opts.Clock.After(wait):
			wait = min(2*wait, inDoubtMaxRetry)
		case <-wake:
		}
	}
}

// unsettled are those of taskIDs still in doubt. A task Mesos told of
// meanwhile (its status came unasked) is settled: it is live.
func (l *Launcher) unsettled(taskIDs []string) []string {
	d := l.doubts
	var out []string
	for _, id := range taskIDs {
		d.mu.Lock()
		dt := d.tasks[id]
		d.mu.Unlock()
		if dt == nil {
			continue
		}
		if l.knownLive(dt.uid, id) {
			l.settled(dt.agentID, map[string]bool{id: true})
			continue
		}
		out = append(out, id)
	}
	return out
}

func (l *Launcher) knownLive(uid types.UID, taskID string) bool {
	for _, t := range l.mesos.PodTasks(uid) {
		if t == taskID {
			return true
		}
	}
	return false
}

// settled forgets the tasks Mesos told of (true: it has them).
func (l *Launcher) settled(agentID string, known map[string]bool) {
	d := l.doubts
	for id, live := range known {
		d.mu.Lock()
		_, was := d.tasks[id]
		delete(d.tasks, id)
		d.mu.Unlock()
		if was {
			klog.InfoS("Task in doubt settled by Mesos", "task", id, "agent", agentID, "launched", live)
		}
	}
}

// refuseInDoubt refuses the launch of reservation r for pod while a task of
// an earlier attempt of the pod is in doubt, so that the pod never runs as
// two tasks. The reservation is released. A task in doubt on r's agent is
// left to Mesos' answer: if it runs, the next Launch adopts it. One
// elsewhere (or one whose wildcard host ports may differ from those the pod
// records now) cannot become this launch's task: it is killed — a KILL of a
// task the master does not have is answered by reconciliation, so the kill
// settles it either way. The pod is scheduled again (ErrInDoubt),
// and launched once Mesos has told: nothing is lost.
func (l *Launcher) refuseInDoubt(ctx context.Context, id string, r *offers.Reservation, pod *v1.Pod) error {
	pending := l.unsettled(l.doubtsOf(pod.UID))
	if len(pending) == 0 {
		return nil
	}
	l.cache.Unreserve(id, "")
	_, ports := pod.Annotations[taskinfo.HostPortsAnnotation]
	now := l.opts.Clock.Now()
	var kill []*doubt
	var killIDs []string
	d := l.doubts
	d.mu.Lock()
	for _, t := range pending {
		dt := d.tasks[t]
		if dt == nil || (dt.agentID == r.AgentID && !ports) {
			continue
		}
		// Once per reconciliation's time is enough: the scheduler may
		// retry the pod sooner than Mesos answers.
		if dt.killed.IsZero() || now.Sub(dt.killed) >= l.opts.SettleTimeout {
			dt.killed = now
			kill, killIDs = append(kill, dt), append(killIDs, t)
		}
	}
	d.mu.Unlock()
	for i, dt := range kill {
		t := killIDs[i]
		// Not the caller's context, nor its time: a loaded master may
		// take long to answer, and the refusal need not wait for it.
		go func() {
			kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.opts.SettleTimeout)
			defer cancel()
			if err := l.mesos.Kill(kctx, t, dt.agentID); err != nil {
				klog.InfoS("Killing a task in doubt failed; asking again at the pod's next launch", "task", t, "agent", dt.agentID, "err", err)
				return
			}
			poke(dt.wake)
		}()
	}
	what := "it is adopted if it runs here"
	if len(kill) > 0 {
		what = "it is being killed, as it cannot become this attempt's task"
	}
	return fmt.Errorf("launching reservation %s of pod %s/%s: %w: the ACCEPT of %s got no answer, nor did its reconciliation; %s; the pod is scheduled again once Mesos has told", id, pod.Namespace, pod.Name, ErrInDoubt, strings.Join(pending, ","), what)
}

// doubtsOf are the tasks of pod uid in doubt.
func (l *Launcher) doubtsOf(uid types.UID) []string {
	d := l.doubts
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for id, dt := range d.tasks {
		if dt.uid == uid {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
