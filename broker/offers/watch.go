package offers

import (
	"context"
	"sync/atomic"
)

// EventType says what an Event carries.
type EventType int

const (
	// EventSnapshot replaces the watcher's whole view with Agents.
	EventSnapshot EventType = iota
	// EventUpdated replaces one agent.
	EventUpdated
	// EventRemoved drops one agent.
	EventRemoved
)

// AgentRef names an agent.
type AgentRef struct {
	ID, Hostname string
}

// Event is one change of the cache as a watcher sees it.
type Event struct {
	Type    EventType
	Version uint64
	Agents  Snapshot  // EventSnapshot
	Agent   AgentView // EventUpdated
	Removed AgentRef  // EventRemoved
}

// Watcher receives a snapshot and then every change. Its buffer is bounded:
// a watcher that falls more than Config.WatchBuffer events behind loses the
// buffered deltas and gets a fresh snapshot instead, so a slow consumer costs
// the cache neither memory nor time.
type Watcher struct {
	c  *Cache
	ch chan Event
	// resync is set when the next Next must be a snapshot: at the start and
	// after the buffer overflowed. Written under c.mu.
	resync atomic.Bool
}

// Watch starts a watcher; Stop it when done.
func (c *Cache) Watch() *Watcher {
	w := &Watcher{c: c, ch: make(chan Event, c.cfg.WatchBuffer)}
	w.resync.Store(true)
	c.mu.Lock()
	c.watchers[w] = struct{}{}
	c.mu.Unlock()
	return w
}

// Stop unregisters the watcher.
func (w *Watcher) Stop() {
	w.c.mu.Lock()
	delete(w.c.watchers, w)
	w.c.mu.Unlock()
}

// Next blocks until the next event or ctx ends. Events come in version order;
// after a snapshot, only events with a higher version follow.
func (w *Watcher) Next(ctx context.Context) (Event, error) {
	if w.resync.Load() {
		w.c.mu.Lock()
		// Deltas still buffered are older than the snapshot; drop them.
		for drained := false; !drained; {
			select {
			case <-w.ch:
			default:
				drained = true
			}
		}
		ev := Event{Type: EventSnapshot, Version: w.c.version, Agents: w.c.snapshotLocked()}
		w.resync.Store(false)
		w.c.mu.Unlock()
		return ev, nil
	}
	select {
	case ev := <-w.ch:
		return ev, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	}
}

// publishLocked hands ev to every watcher without ever blocking the cache.
func (c *Cache) publishLocked(ev Event) {
	for w := range c.watchers {
		if w.resync.Load() {
			continue
		}
		select {
		case w.ch <- ev:
		default:
			w.resync.Store(true)
		}
	}
}
