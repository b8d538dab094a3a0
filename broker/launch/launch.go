// Package launch turns reservations into Mesos tasks, end to end: it batches
// the launches of one agent into one ACCEPT, takes the reserved offers from
// the offer cache, has Mesos accept them with one LAUNCH per pod, and rolls
// back what a failed ACCEPT leaves behind. Its errors are plain domain
// errors (the offer cache's sentinels, *MesosError, context errors); the
// transport maps them to its status codes.
package launch

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Mesos is the Mesos side of launches and kills (the broker's framework).
type Mesos interface {
	// Launch sends one ACCEPT of l.OfferIDs with one LAUNCH per task (and
	// the executor where l.Executor says so). pods holds each task's pod, by
	// reservation id, as it becomes the task's data. It returns once Mesos
	// accepted the call (202).
	Launch(ctx context.Context, l *offers.Launch, pods map[string]taskinfo.PodData) error
	// Kill kills a task; agentID may be empty when unknown.
	Kill(ctx context.Context, taskID, agentID string) error
}

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
	Clock         clock.WithDelayedExecution
}

// Launcher launches reserved pods and kills their tasks.
type Launcher struct {
	cache   *offers.Cache
	mesos   Mesos
	opts    Options
	batches *batcher
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
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	l := &Launcher{cache: cache, mesos: m, opts: opts}
	l.batches = newBatcher(l)
	return l
}

// Launched is what became of a launched pod.
type Launched struct {
	TaskID  string
	AgentID string
	// BatchSize is how many pods went in the same ACCEPT (this one included).
	BatchSize int
}

// Launch starts the pod of reservation id as a Mesos task, batched with the
// agent's other launches, and returns once Mesos accepted it. pod is the
// pod in its final shape (bound to the reservation's node, its wildcard host
// ports recorded), data its encoding, which becomes the task's data as it
// is. A caller that gives up (ctx done) does not stop the batch: the ACCEPT
// may already be on its way, and the reservation is spent either way.
func (l *Launcher) Launch(ctx context.Context, id string, pod *v1.Pod, data []byte) (Launched, error) {
	r, err := l.cache.Get(id)
	if err != nil {
		return Launched{}, fmt.Errorf("launching reservation %s: %w", id, err)
	}
	if pod.UID != r.Pod.UID {
		return Launched{}, fmt.Errorf("reservation %s belongs to pod uid %s, the pod sent has uid %q: %w", id, r.Pod.UID, pod.UID, offers.ErrInvalid)
	}
	if pod.Spec.NodeName != r.Hostname {
		return Launched{}, fmt.Errorf("reservation %s is on node %q, the pod sent is bound to %q (spec.nodeName must name the reservation's node): %w", id, r.Hostname, pod.Spec.NodeName, offers.ErrInvalid)
	}
	p := taskinfo.PodData{Ref: taskinfo.RefOf(pod), JSON: data}
	size, err := l.batches.submit(ctx, r, p)
	if err != nil {
		return Launched{}, err
	}
	return Launched{TaskID: taskinfo.TaskID(r.Pod.UID), AgentID: r.AgentID, BatchSize: size}, nil
}

// Kill drops any claim the pod still holds and kills its task, and returns
// the task's id.
func (l *Launcher) Kill(ctx context.Context, uid types.UID, agentID string) (string, error) {
	l.cache.Unreserve("", uid)
	task := taskinfo.TaskID(uid)
	if err := l.mesos.Kill(ctx, task, agentID); err != nil {
		return task, &MesosError{Doing: "killing task " + task, Err: err}
	}
	return task, nil
}
