package grpcserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/k8sm/k8sm/broker/offers"
)

// batcher groups the Launches of one agent into one ACCEPT. A Mesos ACCEPT
// consumes whole offers, so pods reserved on one agent must launch together
// or the first ACCEPT returns the others' resources to Mesos.
type batcher struct {
	s       *Server
	mu      sync.Mutex
	pending map[string]*batch // by agent id
}

type batch struct {
	agentID string
	entries []*entry
	timer   clock.Timer
	started time.Time
}

type entry struct {
	r    offers.Reservation
	pod  *v1.Pod
	done chan result
}

type result struct {
	err       error
	batchSize int
}

func newBatcher(s *Server) *batcher {
	return &batcher{s: s, pending: map[string]*batch{}}
}

// submit queues one launch and waits for its batch's outcome. A caller that
// gives up (ctx done) does not stop the batch: the ACCEPT may already be on
// its way, and the pod's reservation is then spent either way.
func (b *batcher) submit(ctx context.Context, r offers.Reservation, pod *v1.Pod) result {
	e := &entry{r: r, pod: pod, done: make(chan result, 1)}
	b.mu.Lock()
	bt, ok := b.pending[r.AgentID]
	if !ok {
		bt = &batch{agentID: r.AgentID, started: b.s.opts.Clock.Now()}
		b.pending[r.AgentID] = bt
		b.armLocked(bt, b.s.opts.BatchWindow)
	}
	bt.entries = append(bt.entries, e)
	full := len(bt.entries) >= b.s.cache.Pending(r.AgentID)
	b.mu.Unlock()
	if full {
		go b.flush(bt)
	}
	select {
	case res := <-e.done:
		return res
	case <-ctx.Done():
		return result{err: status.FromContextError(ctx.Err()).Err()}
	}
}

// armLocked sets the batch's timer. The flush runs on its own goroutine: it
// must not hold up the clock's timer machinery (a fake clock runs AfterFunc
// under its lock).
func (b *batcher) armLocked(bt *batch, d time.Duration) {
	bt.timer = b.s.opts.Clock.AfterFunc(d, func() { go b.windowClosed(bt) })
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
	waited := b.s.opts.Clock.Since(bt.started)
	if b.s.cache.Pending(bt.agentID) > len(bt.entries) && waited < b.s.opts.MaxBatchWait {
		b.armLocked(bt, min(b.s.opts.BatchWindow, b.s.opts.MaxBatchWait-waited))
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go b.flush(bt)
}

func (b *batcher) flush(bt *batch) {
	b.mu.Lock()
	if b.pending[bt.agentID] != bt {
		b.mu.Unlock()
		return // flushed already
	}
	delete(b.pending, bt.agentID)
	bt.timer.Stop()
	entries := bt.entries
	b.mu.Unlock()

	ids := make([]string, len(entries))
	pods := make(map[string]*v1.Pod, len(entries))
	for i, e := range entries {
		ids[i] = e.r.ID
		pods[e.r.ID] = e.pod
	}
	answer := func(e *entry, res result) { e.done <- res }
	failAll := func(err error) {
		for _, e := range entries {
			answer(e, result{err: err})
		}
	}
	l, err := b.s.cache.Take(ids...)
	if err != nil {
		failAll(status.Errorf(codes.Internal, "taking offers of agent %s for launch: %v", bt.agentID, err))
		return
	}
	for _, lost := range l.Lost {
		// Its Launch fails with Aborted and says why; the scheduler
		// retries the pod, and the ACCEPT asked Mesos to re-offer at once.
		klog.InfoS("Reservation lost to a launch on the same agent: it did not ask to launch within the batch's wait", "reservation", lost.ID, "pod", klog.KRef(lost.Pod.Namespace, lost.Pod.Name), "node", lost.Hostname, "maxBatchWait", b.s.opts.MaxBatchWait)
	}
	var launchErr error
	if len(l.Tasks) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), b.s.opts.LaunchTimeout)
		defer cancel()
		if err := b.s.launcher.Launch(ctx, l, pods); err != nil {
			// The offers are spent either way; an executor we meant to
			// start did not start.
			for role := range l.Executor {
				b.s.cache.SetExecutorRunning(l.AgentID, role, false)
			}
			launchErr = status.Errorf(codes.Unavailable, "accepting offers %v of agent %s (%s): %v", l.OfferIDs, l.Hostname, l.AgentID, err)
		} else {
			klog.V(2).InfoS("Launched", "agent", l.AgentID, "node", l.Hostname, "offers", l.OfferIDs, "tasks", len(l.Tasks))
		}
	}
	for _, e := range entries {
		switch ferr, failed := l.Failed[e.r.ID]; {
		case failed:
			answer(e, result{err: toStatus(fmt.Errorf("launching reservation %s: %w", e.r.ID, ferr))})
		case launchErr != nil:
			answer(e, result{err: launchErr})
		default:
			answer(e, result{batchSize: len(l.Tasks)})
		}
	}
}
