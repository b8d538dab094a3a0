package launch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// silentMesos is a master too loaded to answer reconciliation until told
// otherwise.
type silentMesos struct {
	*fakeMesos
	mu     sync.Mutex
	silent bool
}

func (s *silentMesos) Settle(ctx context.Context, agentID string, tasks []string) (map[string]bool, error) {
	s.mu.Lock()
	silent := s.silent
	s.mu.Unlock()
	if silent {
		return map[string]bool{}, nil
	}
	return s.fakeMesos.Settle(ctx, agentID, tasks)
}

func (s *silentMesos) answer() {
	s.mu.Lock()
	s.silent = false
	s.mu.Unlock()
}

type doubtEnv struct {
	*env
	silent *silentMesos
}

// newDoubtEnv is an env whose first ACCEPT gets no answer and whose
// reconciliation is not answered either; took says whether the master took
// that ACCEPT.
func newDoubtEnv(t *testing.T, took bool) *doubtEnv {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	cache := offers.New(offers.Config{Clock: clk, Executor: executor})
	m := &fakeMesos{fail: fmt.Errorf("ACCEPT call: EOF: %w", ErrUnknownOutcome), took: took}
	s := &silentMesos{fakeMesos: m, silent: true}
	e := &env{cache: cache, clock: clk, mesos: m, launcher: New(cache, s, Options{Clock: clk, BatchWindow: time.Second})}
	e.offer("o1")
	return &doubtEnv{env: e, silent: s}
}

// offer adds an offer of agent a1 (node-1).
func (e *env) offer(id string) {
	r := podresources.Resources{Scalars: podresources.Scalars{CPUs: 4000, MemMB: 1024000}}
	e.cache.Add(mesos.Offer{ID: mesos.OfferID{Value: id}, AgentID: mesos.AgentID{Value: "a1"}, Hostname: "node-1", Resources: podresources.ToMesos(r, "*")})
}

// launchInDoubt launches pod a once, its ACCEPT left in doubt, and returns
// the task id of that attempt. Mesos answers calls again afterwards.
func (e *doubtEnv) launchInDoubt(t *testing.T) string {
	t.Helper()
	r := e.reserve(t, "a")
	if _, err := e.launch(t, r.ID, "a"); err == nil {
		t.Fatal("launch whose ACCEPT and reconciliation got no answer succeeded")
	}
	e.mesos.mu.Lock()
	e.mesos.fail = nil
	e.mesos.mu.Unlock()
	return taskinfo.TaskID("uid-a", r.ID)
}

// settleDone steps the clock until the launcher no longer holds a task of
// pod a in doubt.
func (e *doubtEnv) settleDone(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(e.launcher.doubtsOf("uid-a")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("tasks %v still in doubt after Mesos answered", e.launcher.doubtsOf("uid-a"))
		}
		e.clock.Step(inDoubtMaxRetry)
		time.Sleep(time.Millisecond)
	}
}

// TestLaunchInDoubtThenAdopted: the master took the ACCEPT of attempt 1 but
// answered neither it nor its reconciliation. The pod's next Launch, on the
// same agent, launches nothing and kills nothing while Mesos is silent;
// once Mesos told that attempt 1 runs there, the next Launch adopts it: the
// pod runs as one task.
func TestLaunchInDoubtThenAdopted(t *testing.T) {
	e := newDoubtEnv(t, true)
	first := e.launchInDoubt(t)

	e.offer("o2")
	r2 := e.reserve(t, "a")
	_, err := e.launch(t, r2.ID, "a")
	if !errors.Is(err, ErrInDoubt) || !errors.Is(err, ErrEarlierAttempt) {
		t.Fatalf("launch while attempt 1 is in doubt: %v, want it refused (ErrInDoubt, an ErrEarlierAttempt)", err)
	}
	if len(e.mesos.sent) != 1 || len(e.mesos.kills) != 0 {
		t.Fatalf("sent %v, killed %v while attempt 1 is in doubt on the same agent: want nothing sent nor killed", e.mesos.sent, e.mesos.kills)
	}
	if _, err := e.cache.Get(r2.ID); err == nil {
		t.Errorf("refused reservation %s still held", r2.ID)
	}

	// Mesos answers: attempt 1 runs on a1 (the framework heard its status).
	e.mesos.mu.Lock()
	e.mesos.live = map[string]string{first: "a1"}
	e.mesos.mu.Unlock()
	e.silent.answer()
	e.settleDone(t)

	r3 := e.reserve(t, "a")
	l, err := e.launch(t, r3.ID, "a")
	if err != nil {
		t.Fatalf("launch after Mesos told attempt 1 runs here: %v, want it adopted", err)
	}
	if l.TaskID != first || len(e.mesos.sent) != 1 {
		t.Errorf("launched %+v (ACCEPTs sent %v), want attempt 1's task %s adopted and no second ACCEPT", l, e.mesos.sent, first)
	}
}

// TestLaunchInDoubtNotTakenLaunchesAgain: the master did not take the ACCEPT
// of attempt 1, and said so only later. The pod is refused while Mesos is
// silent, and launched once it answered: it is not lost.
func TestLaunchInDoubtNotTakenLaunchesAgain(t *testing.T) {
	e := newDoubtEnv(t, false)
	first := e.launchInDoubt(t)

	e.offer("o2")
	r2 := e.reserve(t, "a")
	if _, err := e.launch(t, r2.ID, "a"); !errors.Is(err, ErrInDoubt) {
		t.Fatalf("launch while attempt 1 is in doubt: %v, want ErrInDoubt", err)
	}
	e.silent.answer()
	e.settleDone(t)
	settled := false
	e.mesos.mu.Lock()
	for _, s := range e.mesos.settled {
		settled = settled || s == first
	}
	e.mesos.mu.Unlock()
	if !settled {
		t.Errorf("Mesos was never asked about %s", first)
	}

	r3 := e.reserve(t, "a")
	l, err := e.launch(t, r3.ID, "a")
	if err != nil {
		t.Fatalf("launch after Mesos told attempt 1 was not launched: %v, want it launched", err)
	}
	if l.TaskID == first || len(e.mesos.launches) != 1 {
		t.Errorf("launched %+v (ACCEPTs taken %d), want a new attempt in one ACCEPT", l, len(e.mesos.launches))
	}
}

// TestLaunchInDoubtWithHostPortsKilled: a pod that records this attempt's
// wildcard host ports cannot adopt attempt 1 (its ports came from another
// offer): the task in doubt is killed, and the launch refused.
func TestLaunchInDoubtWithHostPortsKilled(t *testing.T) {
	e := newDoubtEnv(t, true)
	first := e.launchInDoubt(t)

	e.offer("o2")
	r2 := e.reserve(t, "a")
	p, data := pod(t, "a")
	p.Annotations = map[string]string{taskinfo.HostPortsAnnotation: `{"c":{"8080":31001}}`}
	if _, err := e.launcher.Launch(context.Background(), r2.ID, p, data); !errors.Is(err, ErrInDoubt) {
		t.Fatalf("launch while attempt 1 is in doubt: %v, want ErrInDoubt", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.mesos.mu.Lock()
		kills := append([]string(nil), e.mesos.kills...)
		e.mesos.mu.Unlock()
		if len(kills) == 1 && kills[0] == first {
			break
		}
		if len(kills) > 1 || time.Now().After(deadline) {
			t.Fatalf("killed %v, want attempt 1 %s killed once", kills, first)
		}
		time.Sleep(time.Millisecond)
	}
}
