package mesos

import (
	"context"
	"hash/fnv"
	"sync"

	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"k8s.io/klog/v2"
)

// statusWorkers handle UPDATE events off the event loop. Applying a status
// writes to the API server; inline, a slow API server stalled the loop, its
// heartbeat watchdog then dropped a healthy subscription, and with it every
// offer and reservation. Updates of one task go to one worker, in order;
// each is bounded by Config.StatusTimeout and acknowledged only once
// handled, so an update that timed out or was dropped (a full queue) is sent
// again by Mesos.
type statusWorkers struct {
	c      *Client
	h      Handler
	ctx    context.Context
	cancel context.CancelFunc
	queues []chan *scheduler.Event
	wg     sync.WaitGroup
}

// statusQueueLength bounds each worker's backlog; Mesos resends what is
// dropped beyond it.
const statusQueueLength = 4096

func (c *Client) startStatusWorkers(ctx context.Context, h Handler) *statusWorkers {
	ctx, cancel := context.WithCancel(ctx)
	w := &statusWorkers{c: c, h: h, ctx: ctx, cancel: cancel, queues: make([]chan *scheduler.Event, c.cfg.StatusWorkers)}
	for i := range w.queues {
		q := make(chan *scheduler.Event, statusQueueLength)
		w.queues[i] = q
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case ev := <-q:
					w.handle(ev)
				}
			}
		}()
	}
	return w
}

func (w *statusWorkers) enqueue(ev *scheduler.Event) {
	id := ev.GetUpdate().GetStatus().TaskID.Value
	hash := fnv.New32a()
	_, _ = hash.Write([]byte(id))
	select {
	case w.queues[hash.Sum32()%uint32(len(w.queues))] <- ev:
	default:
		klog.FromContext(w.ctx).Info("Status update queue full: the update is dropped unacknowledged, Mesos sends it again", "task", id)
	}
}

func (w *statusWorkers) handle(ev *scheduler.Event) {
	ctx, cancel := context.WithTimeout(w.ctx, w.c.cfg.StatusTimeout)
	defer cancel()
	st := ev.GetUpdate().GetStatus()
	if err := w.h.HandleEvent(ctx, ev); err != nil {
		klog.FromContext(ctx).Error(err, "Handling a task status; it is not acknowledged, Mesos sends it again", "task", st.TaskID.Value, "state", st.GetState())
		return
	}
	w.c.ack(w.ctx, st)
}

// stop ends the workers and waits for them: a handler's API calls end with
// the context.
func (w *statusWorkers) stop() {
	w.cancel()
	w.wg.Wait()
}
