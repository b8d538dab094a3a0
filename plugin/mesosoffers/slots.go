package mesosoffers

import (
	"sync"
	"sync/atomic"
)

// hostSlots maps hostnames to the slots mirror.get reads without the
// mirror's lock. Filter reads it for every node from the scheduler's
// parallel workers, so a read of a known host is one lookup in a plain map
// published whole (sync.Map's hashing of interface keys cost Filter 1 µs
// per node at 5,000 agents, as much as the rest of MesosOffers' Filter).
// A new host does not copy that map: it goes to a small map under a mutex
// of its own, and is published with the rest once the reads that missed the
// published map (they take the mutex) reach an eighth of it, or the new
// hosts as many. Copying the published map for every new host cost 5,000
// agents joining one by one 12.5 million copied entries
// (BenchmarkMirrorNewHosts); here each host is copied a few times in all.
//
// Slots are added, never removed (a host's slot holds nil when it has no
// entry) until reset replaces the table: the mirror's writers, under its
// lock, call add and reset.
type hostSlots struct {
	read atomic.Pointer[map[string]*atomic.Pointer[agent]]
	// amended is whether added holds slots read lacks.
	amended atomic.Bool

	mu     sync.Mutex
	added  map[string]*atomic.Pointer[agent]
	misses int
}

// reset publishes slots, one per entry of agents, replacing every slot.
func (t *hostSlots) reset(agents map[string]*agent) {
	read := make(map[string]*atomic.Pointer[agent], len(agents))
	for host, a := range agents {
		slot := new(atomic.Pointer[agent])
		slot.Store(a)
		read[host] = slot
	}
	t.mu.Lock()
	t.read.Store(&read)
	t.added, t.misses = nil, 0
	t.amended.Store(false)
	t.mu.Unlock()
}

// slot is host's slot, nil if it has none.
func (t *hostSlots) slot(host string) *atomic.Pointer[agent] {
	if s := (*t.read.Load())[host]; s != nil || !t.amended.Load() {
		return s
	}
	return t.slotAdded(host)
}

// slotAdded is slot's look among the slots not published yet.
func (t *hostSlots) slotAdded(host string) *atomic.Pointer[agent] {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.added[host]
	if s == nil {
		// Published since the first look, or unknown.
		s = (*t.read.Load())[host]
	}
	t.misses++
	if t.misses >= max(len(t.added), len(*t.read.Load())/8) {
		t.publishLocked()
	}
	return s
}

// slotToWrite is slot for the mirror's writers: their looks are not the
// reads that publishing the added slots saves, so they count no miss.
func (t *hostSlots) slotToWrite(host string) *atomic.Pointer[agent] {
	if s := (*t.read.Load())[host]; s != nil || !t.amended.Load() {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.added[host]; s != nil {
		return s
	}
	return (*t.read.Load())[host]
}

// add gives host a slot holding a. The host has none: callers asked
// slotToWrite first, under the mirror's lock, which every add holds.
func (t *hostSlots) add(host string, a *agent) {
	s := new(atomic.Pointer[agent])
	s.Store(a)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.added == nil {
		t.added = map[string]*atomic.Pointer[agent]{}
	}
	t.added[host] = s
	t.amended.Store(true)
	if len(t.added) >= max(len(*t.read.Load())/8, 64) {
		t.publishLocked()
	}
}

// publishLocked publishes read and added as one map.
func (t *hostSlots) publishLocked() {
	old := *t.read.Load()
	read := make(map[string]*atomic.Pointer[agent], len(old)+len(t.added))
	for host, s := range old {
		read[host] = s
	}
	for host, s := range t.added {
		read[host] = s
	}
	t.read.Store(&read)
	t.added, t.misses = nil, 0
	t.amended.Store(false)
}
