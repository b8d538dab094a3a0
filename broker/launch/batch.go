package launch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/k8sm/k8sm/broker/metrics"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// batcher groups the launches of one agent into one ACCEPT. A Mesos ACCEPT
// consumes whole offers, so pods reserved on one agent must launch together
// or the first ACCEPT returns the others' resources to Mesos.
type batcher struct {
	l       *Launcher
	mu      sync.Mutex
	pending map[string]*batch // by agent id
	// waiting holds the agent ids of pending, read without mu by
	// reservationEnded, which runs under the offer cache's lock (the
	// batcher takes the cache's lock under mu, never the other way).
	waiting sync.Map
}

type batch struct {
	agentID string
	entries []*entry
	timer   clock.Timer
	started time.Time
}

type entry struct {
	r    offers.Reservation
	pod  taskinfo.PodData
	done chan result
	// queued is when the entry joined its batch.
	queued time.Time
}

type result struct {
	err       error
	batchSize int
	// version is the agent's offer-view version once the ACCEPT's offers
	// left it (offers.Launch.Version).
	version uint64
}

func newBatcher(l *Launcher) *batcher {
	b := &batcher{l: l, pending: map[string]*batch{}}
	l.cache.OnReservationEnded(b.reservationEnded)
	return b
}

// reservationEnded is the offer cache telling that a reservation of agentID
// ended. A batch of that agent waiting for its other reservations to launch
// goes as soon as none is left that has not asked: one that was released,
// expired or lost will never ask, and waiting out the window for it only
// delays the pods that did.
func (b *batcher) reservationEnded(agentID string) {
	if _, ok := b.waiting.Load(agentID); ok {
		go b.recheck(agentID)
	}
}

// recheck flushes the agent's batch if every live reservation of the agent
// is in it.
func (b *batcher) recheck(agentID string) {
	b.mu.Lock()
	bt := b.pending[agentID]
	full := bt != nil && len(bt.entries) >= b.l.cache.Pending(agentID)
	b.mu.Unlock()
	if full {
		b.flush(bt)
	}
}

// submit queues one launch and waits for its batch's outcome: the batch's
// size and the version of the agent's view without the accepted offers, or
// why this pod did not launch.
func (b *batcher) submit(ctx context.Context, r offers.Reservation, pod taskinfo.PodData) (result, error) {
	e := &entry{r: r, pod: pod, done: make(chan result, 1), queued: b.l.opts.Clock.Now()}
	b.mu.Lock()
	bt, ok := b.pending[r.AgentID]
	if !ok {
		bt = &batch{agentID: r.AgentID, started: b.l.opts.Clock.Now()}
		b.pending[r.AgentID] = bt
		b.waiting.Store(r.AgentID, struct{}{})
		b.armLocked(bt, b.l.opts.BatchWindow)
	}
	bt.entries = append(bt.entries, e)
	full := len(bt.entries) >= b.l.cache.Pending(r.AgentID)
	b.mu.Unlock()
	if full {
		go b.flush(bt)
	}
	select {
	case res := <-e.done:
		return res, res.err
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
}

// armLocked sets the batch's timer. The flush runs on its own goroutine: it
// must not hold up the clock's timer machinery (a fake clock runs AfterFunc
// under its lock).
func (b *batcher) armLocked(bt *batch, d time.Duration) {
	bt.timer = b.l.opts.Clock.AfterFunc(d, func() { go b.windowClosed(bt) })
}

// windowClosed flushes the batch, unless the agent holds reservations that
// have not asked to launch yet: the ACCEPT consumes whole offers, and Mesos
// takes back what it does not use, so their resources would go with it. A
// scheduler reserves and then launches within milliseconds; such a
// straggler is waited for, up to MaxBatchWait, so that it joins this ACCEPT.
func (b *batcher) windowClosed(bt *batch) {
	b.mu.Lock()
	if b.pending[bt.agentID] != bt {
		b.mu.Unlock()
		return
	}
	waited := b.l.opts.Clock.Since(bt.started)
	if b.l.cache.Pending(bt.agentID) > len(bt.entries) && waited < b.l.opts.MaxBatchWait {
		b.armLocked(bt, min(b.l.opts.BatchWindow, b.l.opts.MaxBatchWait-waited))
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go b.flush(bt)
}

// flush takes the batch's reservations from the cache, has Mesos accept
// them, and answers every entry.
func (b *batcher) flush(bt *batch) {
	b.mu.Lock()
	if b.pending[bt.agentID] != bt {
		b.mu.Unlock()
		return // flushed already
	}
	delete(b.pending, bt.agentID)
	b.waiting.Delete(bt.agentID)
	bt.timer.Stop()
	entries := bt.entries
	b.mu.Unlock()
	flushed := b.l.opts.Clock.Now()
	for _, e := range entries {
		metrics.LaunchPhases.WithLabelValues("batch_wait").Observe(flushed.Sub(e.queued).Seconds())
	}

	ids := make([]string, len(entries))
	pods := make(map[string]taskinfo.PodData, len(entries))
	for i, e := range entries {
		ids[i] = e.r.ID
		pods[e.r.ID] = e.pod
	}
	answer := func(e *entry, res result) {
		metrics.LaunchPhases.WithLabelValues("accept").Observe(b.l.opts.Clock.Since(flushed).Seconds())
		e.done <- res
	}
	l, err := b.l.cache.Take(ids...)
	if err != nil {
		for _, e := range entries {
			answer(e, result{err: fmt.Errorf("taking offers of agent %s for launch: %w", bt.agentID, err)})
		}
		return
	}
	for _, lost := range l.Lost {
		// Its Launch fails with ErrLost and says why; the scheduler
		// retries the pod, and the ACCEPT asked Mesos to re-offer at once.
		klog.InfoS("Reservation lost to a launch on the same agent: it did not ask to launch within the batch's wait", "reservation", lost.ID, "pod", klog.KRef(lost.Pod.Namespace, lost.Pod.Name), "node", lost.Hostname, "maxBatchWait", b.l.opts.MaxBatchWait)
	}
	var launchErr error
	if len(l.Tasks) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), b.l.opts.LaunchTimeout)
		err := b.l.mesos.Launch(ctx, l, pods)
		if errors.Is(err, ErrUnknownOutcome) {
			err = b.settle(l, pods, err)
		}
		cancel()
		if err != nil {
			// The offers are spent either way; an executor we meant to
			// start did not start.
			for role := range l.Executor {
				b.l.cache.SetExecutorRunning(l.AgentID, role, false)
			}
			launchErr = &MesosError{Doing: fmt.Sprintf("accepting offers %v of agent %s (%s)", l.OfferIDs, l.Hostname, l.AgentID), Err: err}
		} else {
			klog.V(2).InfoS("Launched", "agent", l.AgentID, "node", l.Hostname, "offers", l.OfferIDs, "tasks", len(l.Tasks))
		}
	}
	for _, e := range entries {
		switch ferr, failed := l.Failed[e.r.ID]; {
		case failed:
			answer(e, result{err: fmt.Errorf("launching reservation %s: %w", e.r.ID, ferr)})
		case launchErr != nil:
			answer(e, result{err: launchErr})
		default:
			answer(e, result{batchSize: len(l.Tasks), version: l.Version})
		}
	}
}

// settle decides an ACCEPT whose call got no answer (it timed out, the
// connection broke) by asking Mesos about its tasks, instead of failing pods
// whose tasks may run: Mesos takes an ACCEPT whole, so one task the master
// has means it was taken (nil). Otherwise the launch fails with err and the
// pod is retried as another attempt (another task id), so a task of this
// one that turns up later is killed, never confused with the retry's. If
// Mesos answered nothing about them, the tasks are in doubt: the retry
// launches nothing until Mesos has told (refuseInDoubt).
func (b *batcher) settle(l *offers.Launch, pods map[string]taskinfo.PodData, err error) error {
	ids := make([]string, 0, len(l.Tasks))
	for _, t := range l.Tasks {
		if p, ok := pods[t.ID]; ok {
			ids = append(ids, taskinfo.NewTaskID(p))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.l.opts.SettleTimeout)
	defer cancel()
	known, serr := b.l.mesos.Settle(ctx, l.AgentID, ids)
	for _, id := range ids {
		if known[id] {
			klog.InfoS("ACCEPT without an answer was taken: reconciliation found its tasks", "agent", l.AgentID, "tasks", ids, "err", err)
			return nil
		}
	}
	if len(known) == 0 {
		// Not even the reconciliation was answered: the tasks may run.
		b.l.recordInDoubt(l.AgentID, ids)
		if serr == nil {
			serr = errors.New("Mesos did not answer it in time")
		}
		return fmt.Errorf("%w; settling it by reconciliation: %v; its tasks are in doubt, and their pods are not launched again until Mesos has told of them", err, serr)
	}
	if serr != nil {
		return fmt.Errorf("%w; settling it by reconciliation: %v", err, serr)
	}
	return err
}
