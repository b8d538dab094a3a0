// Package launch turns reservations into Mesos tasks, end to end: it batches
// the launches of one agent into one ACCEPT, takes the reserved offers from
// the offer cache, has Mesos accept them with one LAUNCH per pod, and rolls
// back what a failed ACCEPT leaves behind. Its errors are plain domain
// errors (the offer cache's sentinels, *MesosError, context errors); the
// transport maps them to its status codes.
package launch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/k8sm/k8sm/broker/metrics"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Mesos is the Mesos side of launches and kills (the broker's framework).
type Mesos interface {
	// Launch sends one ACCEPT of l.OfferIDs with one LAUNCH per task (and
	// the executor where l.Executor says so). pods holds each task's pod, by
	// reservation id, as it becomes the task's data. It returns once Mesos
	// accepted the call (202).
	// An error wrapping ErrUnknownOutcome says the call may have reached
	// the master (it timed out, the connection broke): Settle tells.
	Launch(ctx context.Context, l *offers.Launch, pods map[string]taskinfo.PodData) error
	// Settle asks Mesos about tasks of an ACCEPT whose outcome is unknown
	// (explicit reconciliation) and reports, for each task answered, whether
	// the master has it. A task not in the map was not answered.
	Settle(ctx context.Context, agentID string, taskIDs []string) (map[string]bool, error)
	// Kill kills a task; agentID may be empty when unknown.
	Kill(ctx context.Context, taskID, agentID string) error
	// PodTasks are the live tasks of a pod Mesos told of (any broker's
	// attempts, learnt from their statuses).
	PodTasks(uid types.UID) []string
	// TaskAgent is the agent a live task was last seen on ("" if unknown).
	TaskAgent(taskID string) string
}

// ErrUnknownOutcome: a call to Mesos got no answer, it may or may not have
// been taken.
var ErrUnknownOutcome = errors.New("Mesos did not answer; the call may have been taken")

// ErrEarlierAttempt: the pod has a live task of an earlier attempt that
// cannot become this launch's task; it is being killed, and the pod is
// scheduled again once it has ended.
var ErrEarlierAttempt = errors.New("the pod has a live task of an earlier attempt")

// ErrInDoubt: the pod has a task of an earlier attempt whose ACCEPT Mesos
// neither answered nor told of since, which may run; the pod is scheduled
// again once Mesos has told. It is an ErrEarlierAttempt (errors.Is).
var ErrInDoubt error = inDoubtError{}

type inDoubtError struct{}

func (inDoubtError) Error() string {
	return "the pod has a task of an earlier attempt that may run: Mesos has not told"
}
func (inDoubtError) Is(target error) bool { return target == ErrEarlierAttempt }

// MesosError is a call Mesos did not take (it could not be reached, or it
// refused): the pod is retried once Mesos answers again.
type MesosError struct {
	// Doing says what was being done, e.g. "accepting offers [o1] of agent a1".
	Doing string
	Err   error
}

func (e *MesosError) Error() string { return e.Doing + ": " + e.Err.Error() }
func (e *MesosError) Unwrap() error { return e.Err }

// Options tune the launcher; zero fields take defaults.
type Options struct {
	// BatchWindow is how long a Launch waits for the other pods reserved on
	// the same agent to launch with it in one ACCEPT (default 100ms). The
	// window closes early once every reservation of the agent has asked.
	BatchWindow time.Duration
	// MaxBatchWait bounds how long a batch waits, window after window, for
	// the launches of reservations already made on its agent (default 10
	// windows). One that asks later than that finds its reservation lost
	// (offers.ErrLost): the ACCEPT took its offer.
	MaxBatchWait time.Duration
	// LaunchTimeout bounds one ACCEPT (default 30s).
	LaunchTimeout time.Duration
	// SettleTimeout bounds the reconciliation that settles an ACCEPT whose
	// outcome is unknown (default 10s).
	SettleTimeout time.Duration
	// Remember is how long a launch's outcome answers retries of it
	// (default 10m).
	Remember time.Duration
	// AgentHostname names the node of an agent the offer cache has not
	// seen offer (the broker's node mirror also lists the master's
	// agents): the node an adopted earlier attempt runs on. Optional.
	AgentHostname func(agentID string) (string, bool)
	Clock         clock.WithDelayedExecution
}

// Launcher launches reserved pods and kills their tasks.
type Launcher struct {
	cache   *offers.Cache
	mesos   Mesos
	opts    Options
	batches *batcher

	mu sync.Mutex
	// attempts are the launches asked for, by reservation id (the attempt):
	// a retried Launch waits for, and gets, the first one's outcome.
	attempts map[string]*attempt
	// killed are the tasks Kill asked Mesos to kill, when: they are on
	// their way out, not earlier attempts a launch must settle first.
	killed map[string]time.Time
	pruned time.Time
	// doubts are the tasks of ACCEPTs whose outcome is unknown (indoubt.go).
	doubts *inDoubt
}

// attempt is one launch of a pod: done is closed once res and err are set.
type attempt struct {
	uid  types.UID
	done chan struct{}
	res  Launched
	err  error
	at   time.Time
}

// New returns a Launcher over cache that calls Mesos through m.
func New(cache *offers.Cache, m Mesos, opts Options) *Launcher {
	if opts.BatchWindow <= 0 {
		opts.BatchWindow = 100 * time.Millisecond
	}
	if opts.MaxBatchWait <= 0 {
		opts.MaxBatchWait = 10 * opts.BatchWindow
	}
	if opts.LaunchTimeout <= 0 {
		opts.LaunchTimeout = 30 * time.Second
	}
	if opts.SettleTimeout <= 0 {
		opts.SettleTimeout = 10 * time.Second
	}
	if opts.Remember <= 0 {
		opts.Remember = 10 * time.Minute
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	l := &Launcher{cache: cache, mesos: m, opts: opts, attempts: map[string]*attempt{}, killed: map[string]time.Time{}, doubts: newInDoubt()}
	l.batches = newBatcher(l)
	return l
}

// Launched is what became of a launched pod.
type Launched struct {
	TaskID  string
	AgentID string
	// Hostname is the node the task runs on, which the pod is bound to: the
	// reservation's, or an adopted earlier attempt's.
	Hostname string
	// BatchSize is how many pods went in the same ACCEPT (this one included).
	BatchSize int
	// ResourceVersion is the agent's version in the offer cache once the
	// ACCEPT's offers left it (offers.Launch.Version); 0 for an adopted
	// task, which took no offers.
	ResourceVersion uint64
}

// Launch starts the pod of reservation id as a Mesos task, batched with the
// agent's other launches, and returns once Mesos accepted it. pod is the
// pod in its final shape (bound to the reservation's node, its wildcard host
// ports recorded), data its encoding, which becomes the task's data as it
// is. The reservation is the launch's attempt: its id is part of the task
// id, and a Launch retried for it gets the first one's outcome (the same
// task), not a second task. A caller that gives up (ctx done) does not stop
// the batch: the ACCEPT may already be on its way, and the reservation is
// spent either way.
//
// A pod that already has a live task of another attempt (a broker that
// died after the master took its ACCEPT, before it answered: the restarted
// broker learns of the task by reconciliation) is not launched a second
// time: it is adopted, or killed and the Launch refused (adoptable).
func (l *Launcher) Launch(ctx context.Context, id string, pod *v1.Pod, data []byte) (Launched, error) {
	start := l.opts.Clock.Now()
	a, first, err := l.attempt(ctx, id, pod)
	if err != nil {
		return Launched{}, err
	}
	if first != nil {
		p := taskinfo.PodData{Ref: taskinfo.RefOf(pod), JSON: data, Attempt: id}
		metrics.LaunchPhases.WithLabelValues("admit").Observe(l.opts.Clock.Since(start).Seconds())
		go func() {
			// Not the caller's context: a retry waits for this outcome.
			res, err := l.batches.submit(context.Background(), *first, p)
			l.mu.Lock()
			if err == nil {
				a.res = Launched{TaskID: taskinfo.NewTaskID(p), AgentID: first.AgentID, Hostname: first.Hostname, BatchSize: res.batchSize, ResourceVersion: res.version}
			}
			a.err, a.at = err, l.opts.Clock.Now()
			l.mu.Unlock()
			close(a.done)
		}()
	}
	select {
	case <-a.done:
		return a.res, a.err
	case <-ctx.Done():
		return Launched{}, ctx.Err()
	}
}

// attempt returns the launch of reservation id for pod: the one already
// asked for, or a new one with the reservation to launch (first).
func (l *Launcher) attempt(ctx context.Context, id string, pod *v1.Pod) (a *attempt, first *offers.Reservation, err error) {
	l.mu.Lock()
	a = l.attempts[id]
	l.mu.Unlock()
	if a != nil {
		if a.uid != pod.UID {
			return nil, nil, fmt.Errorf("reservation %s was launched for pod uid %s, the pod sent has uid %q: %w", id, a.uid, pod.UID, offers.ErrInvalid)
		}
		return a, nil, nil
	}
	r, err := l.cache.Get(id)
	if err != nil {
		return nil, nil, fmt.Errorf("launching reservation %s: %w", id, err)
	}
	if pod.UID != r.Pod.UID {
		return nil, nil, fmt.Errorf("reservation %s belongs to pod uid %s, the pod sent has uid %q: %w", id, r.Pod.UID, pod.UID, offers.ErrInvalid)
	}
	if pod.Spec.NodeName != r.Hostname {
		return nil, nil, fmt.Errorf("reservation %s is on node %q, the pod sent is bound to %q (spec.nodeName must name the reservation's node): %w", id, r.Hostname, pod.Spec.NodeName, offers.ErrInvalid)
	}
	// Nor beside a task of an earlier attempt whose ACCEPT is in doubt.
	if err := l.refuseInDoubt(ctx, id, &r, pod); err != nil {
		return nil, nil, err
	}
	earlier := l.earlierTasks(pod.UID, id)
	l.mu.Lock()
	if a = l.attempts[id]; a != nil {
		l.mu.Unlock()
		return a, nil, nil // a concurrent retry got here first
	}
	l.pruneLocked()
	a = &attempt{uid: pod.UID, done: make(chan struct{})}
	if len(earlier) == 0 {
		l.attempts[id] = a
		l.mu.Unlock()
		return a, &r, nil
	}
	// The reservation is not launched either way: its offers go back.
	l.cache.Unreserve(id, "")
	adopted, why := l.adoptable(earlier, pod)
	if why == "" {
		a.res = adopted
		a.at = l.opts.Clock.Now()
		close(a.done)
		l.attempts[id] = a // a retry gets the adopted task too
		l.mu.Unlock()
		return a, nil, nil
	}
	l.mu.Unlock()
	return nil, nil, l.killEarlier(ctx, id, pod, earlier, why)
}

// earlierTasks are the live tasks of pod uid of attempts other than id
// that Mesos told of, but for those Kill is ending.
func (l *Launcher) earlierTasks(uid types.UID, id string) []string {
	tasks := l.mesos.PodTasks(uid)
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, t := range tasks {
		if _, killing := l.killed[t]; !killing && t != taskinfo.TaskID(uid, id) {
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// adoptable returns the pod's one earlier live task as this launch's, or
// says why it cannot be. The pod is then bound as that task, on the node it
// runs on, whichever node the scheduler picked for this attempt (the
// plugin binds the pod to the node Launch answers): the task's resources
// are already Mesos' own there, counted by the master and left out of the
// offers, and the scheduler counts the pod there once it shows bound. The
// pod must not record wildcard host ports: the plugin wrote this attempt's
// ports on it before Launch (where the executor and endpoints read them),
// and the earlier task's were chosen from another offer. Every other field
// the task's pod carries is the pod's spec, the same for both attempts.
//
// Adopting rather than killing and launching again keeps the promise that
// a pod runs as one Mesos task (the invariant counts ended tasks too), and
// costs nothing: the task is already there, its executor waiting for the
// pod to be bound as it.
func (l *Launcher) adoptable(earlier []string, pod *v1.Pod) (Launched, string) {
	if len(earlier) != 1 {
		return Launched{}, fmt.Sprintf("the pod has %d live tasks", len(earlier))
	}
	if _, ports := pod.Annotations[taskinfo.HostPortsAnnotation]; ports {
		return Launched{}, "the pod records this attempt's wildcard host ports, and the earlier attempt's may differ"
	}
	agentID := l.mesos.TaskAgent(earlier[0])
	if agentID == "" {
		return Launched{}, "its agent is not known"
	}
	host := ""
	if v, ok := l.cache.Agent(agentID); ok {
		host = v.Hostname
	}
	if host == "" && l.opts.AgentHostname != nil {
		host, _ = l.opts.AgentHostname(agentID)
	}
	if host == "" {
		return Launched{}, "the node of its agent " + agentID + " is not known"
	}
	return Launched{TaskID: earlier[0], AgentID: agentID, Hostname: host, BatchSize: 1}, ""
}

// killEarlier kills a pod's earlier live tasks that cannot be adopted (why)
// and refuses the launch: the pod is scheduled again, and its next launch
// goes ahead once Mesos has reported them ended. They are not recorded as
// killed, so that a launch before then is refused too.
func (l *Launcher) killEarlier(ctx context.Context, id string, pod *v1.Pod, earlier []string, why string) error {
	for _, t := range earlier {
		if err := l.mesos.Kill(ctx, t, l.mesos.TaskAgent(t)); err != nil {
			return &MesosError{Doing: fmt.Sprintf("killing task %s, an earlier attempt of pod %s/%s, before launching reservation %s", t, pod.Namespace, pod.Name, id), Err: err}
		}
	}
	return fmt.Errorf("launching reservation %s of pod %s/%s: %w: %s cannot be adopted (%s) and is being killed; the pod is scheduled again once it has ended", id, pod.Namespace, pod.Name, ErrEarlierAttempt, strings.Join(earlier, ","), why)
}

// pruneLocked forgets, once a minute, the attempts ended longer than
// Remember ago.
func (l *Launcher) pruneLocked() {
	now := l.opts.Clock.Now()
	if now.Sub(l.pruned) < time.Minute {
		return
	}
	l.pruned = now
	for id, a := range l.attempts {
		if !a.at.IsZero() && now.Sub(a.at) > l.opts.Remember {
			delete(l.attempts, id)
		}
	}
	for id, at := range l.killed {
		if now.Sub(at) > l.opts.Remember {
			delete(l.killed, id)
		}
	}
}

// Kill drops any claim the pod still holds and kills its tasks: those of its
// attempts launched here or known to Mesos, or, if none, its task without
// an attempt. It returns the ids killed, comma-separated.
func (l *Launcher) Kill(ctx context.Context, uid types.UID, agentID string) (string, error) {
	l.cache.Unreserve("", uid)
	tasks := l.mesos.PodTasks(uid)
	l.mu.Lock()
	for id, a := range l.attempts {
		if task := taskinfo.TaskID(uid, id); a.uid == uid && !slices.Contains(tasks, task) {
			tasks = append(tasks, task)
		}
	}
	l.mu.Unlock()
	if len(tasks) == 0 {
		tasks = append(tasks, taskinfo.TaskID(uid, ""))
	}
	sort.Strings(tasks)
	l.mu.Lock()
	now := l.opts.Clock.Now()
	for _, task := range tasks {
		l.killed[task] = now
	}
	l.mu.Unlock()
	for _, task := range tasks {
		if err := l.mesos.Kill(ctx, task, agentID); err != nil {
			return task, &MesosError{Doing: "killing task " + task, Err: err}
		}
	}
	return strings.Join(tasks, ","), nil
}
