package offers

import (
	"fmt"
	"math/rand"
	"reflect"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// model drives a cache with a sequence of operations decoded from bytes and
// checks after each one that nothing is double-booked, and that every Take
// hands out exactly what its offers held, each offer at most once.
type model struct {
	t        testing.TB
	c        *Cache
	clk      interface{ Step(time.Duration) }
	offers   map[string]mesos.Offer
	accepted map[string]bool
	live     []string
	nextID   int
	// Mesos never offers the same port twice at once; each offer gets ports
	// no earlier offer of its agent had.
	nextPort [3]uint64
}

func newModel(t testing.TB) *model {
	c, clk := newTestCache(Config{Executor: res(0.1, 16), DeclineAfter: 3 * time.Second, WatchBuffer: 4})
	return &model{t: t, c: c, clk: clk, offers: map[string]mesos.Offer{}, accepted: map[string]bool{}}
}

func (m *model) run(data []byte) {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	w := m.c.Watch()
	defer w.Stop()
	for len(data) > 0 {
		op := next() % 8
		agent := next() % 3
		host := fmt.Sprintf("node-%d", agent)
		agentID := fmt.Sprintf("a%d", agent)
		role := []string{"*", "web"}[next()%2]
		switch op {
		case 0, 1: // add an offer
			m.nextID++
			id := fmt.Sprintf("o%d", m.nextID)
			base := 100 + m.nextPort[agent]
			n := uint64(next() % 4)
			m.nextPort[agent] += n + 1
			o := mkOffer(id, agentID, host, role, res(float64(next()%4)/2, float64(next()%4*64),
				podresources.Range{Begin: base, End: base + n}))
			m.offers[id] = o
			m.c.Add(o)
		case 2: // rescind one of the known offers
			if m.nextID > 0 {
				m.c.Rescind(fmt.Sprintf("o%d", 1+next()%m.nextID))
			}
		case 3, 4: // reserve
			d := podresources.Demand{Scalars: res(float64(next()%3)/2, float64(next()%3*32)).Scalars, WildcardPorts: next() % 3}
			if p := uint64(next() % 12); p < 8 && m.nextPort[agent] > p {
				d.HostPorts = []uint64{100 + m.nextPort[agent] - 1 - p}
			}
			if next()%3 == 0 {
				d.Roles = []string{role}
			}
			r, err := m.c.Reserve(ReserveRequest{Pod: podRef(next() % 10), NodeName: host, Demand: d, TTL: time.Duration(1+next()%5) * time.Second})
			if err == nil {
				m.live = append(m.live, r.ID)
			}
		case 5: // unreserve or take some reservations
			if len(m.live) == 0 {
				continue
			}
			ids := []string{m.live[next()%len(m.live)], m.live[next()%len(m.live)]}
			if next()%3 == 0 {
				m.c.Unreserve(ids[0], "")
				continue
			}
			l, err := m.c.Take(ids...)
			if err != nil {
				m.t.Fatalf("Take(%v): %v", ids, err)
			}
			m.checkLaunch(l)
		case 6:
			m.clk.Step(time.Duration(next()%3) * time.Second)
			m.c.Expire()
			for _, id := range m.c.Declinable().OfferIDs {
				m.accepted[id] = true // declined offers must never be used again either
			}
		case 7:
			m.c.SetExecutorRunning(agentID, role, next()%2 == 0)
		}
		checkInvariants(m.t, m.c)
	}
	// The watcher's view, after catching up, equals the cache's.
	var view map[string]AgentView
	for {
		ev, err := w.Next(canceledOnEmpty(w))
		if err != nil {
			break
		}
		switch ev.Type {
		case EventSnapshot:
			view = map[string]AgentView{}
			for _, a := range ev.Agents.Views() {
				view[a.ID] = a
			}
		case EventUpdated:
			view[ev.Agent.ID] = ev.Agent
		case EventRemoved:
			delete(view, ev.Removed.ID)
		}
	}
	snap, _ := m.c.Snapshot()
	if len(snap) != len(view) {
		m.t.Fatalf("watcher sees %d agents, cache has %d", len(view), len(snap))
	}
	for _, a := range snap {
		if !reflect.DeepEqual(view[a.ID], a) {
			m.t.Fatalf("watcher's copy of %s is %+v, cache has %+v", a.ID, view[a.ID], a)
		}
	}
}

func (m *model) checkLaunch(l *Launch) {
	if len(l.Tasks) == 0 {
		if len(l.OfferIDs) != 0 {
			m.t.Fatalf("launch without tasks accepts offers %v", l.OfferIDs)
		}
		return
	}
	var offered mesos.Resources
	for _, id := range l.OfferIDs {
		if m.accepted[id] {
			m.t.Fatalf("offer %s used twice", id)
		}
		m.accepted[id] = true
		offered = append(offered, m.offers[id].Resources...)
	}
	var handed mesos.Resources
	for _, t := range l.Tasks {
		if got := podresources.FromMesos(t.Resources); !reflect.DeepEqual(got, podresources.ByRole{t.Role: t.Claim}) && !t.Claim.IsZero() {
			m.t.Fatalf("task %s got %v, claimed %v", t.ID, got, t.Claim)
		}
		handed = append(handed, t.Resources...)
	}
	for _, r := range l.Executor {
		handed = append(handed, r...)
	}
	handed = append(handed, l.Remainder...)
	want, got := podresources.FromMesos(offered), podresources.FromMesos(handed)
	for role := range want {
		if !want[role].Contains(got[role]) || !got[role].Contains(want[role]) {
			m.t.Fatalf("role %s: offers held %v, launch hands out %v", role, want[role], got[role])
		}
	}
}

// canceledOnEmpty returns a context that is already done when the watcher has
// nothing buffered, so the drain loop above ends.
func canceledOnEmpty(w *Watcher) contextWithDone {
	if len(w.ch) > 0 || w.resync.Load() {
		return contextWithDone{done: nil}
	}
	closed := make(chan struct{})
	close(closed)
	return contextWithDone{done: closed}
}

func FuzzNoDoubleBooking(f *testing.F) {
	f.Add([]byte{0, 0, 0, 3, 3, 2, 3, 0, 0, 1, 0, 2, 4, 0, 0, 2, 1, 1, 2, 3, 5, 0, 0, 0, 0, 1})
	f.Add([]byte{1, 1, 1, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 3, 1, 1, 0, 1, 7, 1, 1, 1, 5, 1, 1, 0, 0, 1, 2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		newModel(t).run(data)
	})
}

// TestNoDoubleBookingRandom runs the fuzz model on random sequences so that
// plain `go test` explores more than the seed corpus.
func TestNoDoubleBookingRandom(t *testing.T) {
	rnd := rand.New(rand.NewSource(42))
	for i := 0; i < 1000; i++ {
		data := make([]byte, rnd.Intn(1000))
		rnd.Read(data)
		// Small values pick small amounts (zero demands, single ports) often.
		for j := range data {
			if rnd.Intn(3) == 0 {
				data[j] = byte(rnd.Intn(8))
			}
		}
		newModel(t).run(data)
	}
}

// TestConcurrentOperationsKeepInvariants hammers one cache from many
// goroutines (run with -race) and checks the invariants as it goes.
func TestConcurrentOperationsKeepInvariants(t *testing.T) {
	c, _ := newTestCache(Config{Executor: res(0.1, 16), WatchBuffer: 8})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// A slow watcher, to exercise resyncs under load.
	var watcher sync.WaitGroup
	watcher.Add(1)
	go func() {
		defer watcher.Done()
		w := c.Watch()
		defer w.Stop()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := w.Next(contextWithDone{done: stop}); err != nil {
				return
			}
			time.Sleep(time.Microsecond)
		}
	}()
	var offerSeq sync.Mutex
	next := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewSource(int64(g)))
			var mine []string
			for i := 0; i < 400; i++ {
				agent := rnd.Intn(4)
				host := fmt.Sprintf("node-%d", agent)
				switch rnd.Intn(6) {
				case 0:
					offerSeq.Lock()
					next++
					id := fmt.Sprintf("o%d", next)
					// Fresh ports per offer, as Mesos never offers a port twice at once.
					base := uint64(1000 + 4*next)
					offerSeq.Unlock()
					c.Add(mkOffer(id, fmt.Sprintf("a%d", agent), host, "*", res(float64(rnd.Intn(4)), 256, podresources.Range{Begin: base, End: base + 3})))
				case 1:
					offerSeq.Lock()
					n := next
					offerSeq.Unlock()
					if n > 0 {
						c.Rescind(fmt.Sprintf("o%d", 1+rnd.Intn(n)))
					}
				case 2, 3:
					d := podresources.Demand{Scalars: res(float64(rnd.Intn(3))/2, 32).Scalars, WildcardPorts: rnd.Intn(2)}
					if r, err := c.Reserve(ReserveRequest{Pod: podRef(g*1000 + rnd.Intn(20)), NodeName: host, Demand: d}); err == nil {
						mine = append(mine, r.ID)
					}
				case 4:
					if len(mine) > 0 {
						if _, err := c.Take(mine[rnd.Intn(len(mine))]); err != nil {
							t.Errorf("Take: %v", err)
						}
					}
				case 5:
					if len(mine) > 0 {
						c.Unreserve(mine[rnd.Intn(len(mine))], "")
					}
				}
				if i%50 == 0 {
					checkInvariants(t, c)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	watcher.Wait()
	checkInvariants(t, c)
}
