package launch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/component-base/metrics/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

type fakeMesos struct {
	mu       sync.Mutex
	launches []*offers.Launch
	pods     []map[string]taskinfo.PodData
	kills    []string
	fail     error
	// took: the ACCEPT reached the master although its call failed (fail).
	took bool
	// master holds the tasks the master took; settled the tasks asked about.
	master  map[string]bool
	settled []string
	// sent are the task ids of every ACCEPT, taken or not.
	sent []string
	// live are the live tasks Mesos told of (reconciliation, statuses):
	// task id → agent id.
	live map[string]string
}

func (f *fakeMesos) Launch(_ context.Context, l *offers.Launch, pods map[string]taskinfo.PodData) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range pods {
		f.sent = append(f.sent, taskinfo.NewTaskID(p))
	}
	if f.fail != nil && !f.took {
		return f.fail
	}
	f.launches = append(f.launches, l)
	f.pods = append(f.pods, pods)
	if f.master == nil {
		f.master = map[string]bool{}
	}
	for _, p := range pods {
		f.master[taskinfo.NewTaskID(p)] = true
	}
	return f.fail
}

func (f *fakeMesos) PodTasks(uid types.UID) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for id := range f.live {
		if taskinfo.PodUID(id) == uid {
			out = append(out, id)
		}
	}
	return out
}

func (f *fakeMesos) TaskAgent(taskID string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live[taskID]
}

func (f *fakeMesos) Settle(_ context.Context, _ string, tasks []string) (map[string]bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settled = append(f.settled, tasks...)
	known := map[string]bool{}
	for _, t := range tasks {
		known[t] = f.master[t]
	}
	return known, nil
}

func (f *fakeMesos) Kill(_ context.Context, taskID, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, taskID)
	return f.fail
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type env struct {
	cache    *offers.Cache
	clock    *clocktesting.FakeClock
	mesos    *fakeMesos
	launcher *Launcher
}

// executor is the size of the k8sm executor in these tests.
var executor = podresources.Resources{Scalars: podresources.Scalars{CPUs: 100, MemMB: 32000}}

func newEnv(t *testing.T) *env {
	t.Helper()
	clk := clocktesting.NewFakeClock(t0)
	cache := offers.New(offers.Config{Clock: clk, Executor: executor})
	m := &fakeMesos{}
	e := &env{cache: cache, clock: clk, mesos: m, launcher: New(cache, m, Options{Clock: clk, BatchWindow: time.Second})}
	r := podresources.Resources{Scalars: podresources.Scalars{CPUs: 4000, MemMB: 1024000}}
	cache.Add(mesos.Offer{ID: mesos.OfferID{Value: "o1"}, AgentID: mesos.AgentID{Value: "a1"}, Hostname: "node-1", Resources: podresources.ToMesos(r, "*")})
	return e
}

// reserve claims one cpu on node-1 for pod n.
func (e *env) reserve(t *testing.T, n string) offers.Reservation {
	t.Helper()
	r, err := e.cache.Reserve(offers.ReserveRequest{
		Pod:      offers.PodRef{UID: types.UID("uid-" + n), Namespace: "default", Name: n},
		NodeName: "node-1",
		Demand:   podresources.Demand{Scalars: podresources.Scalars{CPUs: 1000}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pod is pod n in its final shape, bound to node-1, and its encoding.
func pod(t *testing.T, n string) (*v1.Pod, []byte) {
	t.Helper()
	p := &v1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "default", UID: types.UID("uid-" + n)},
		Spec:       v1.PodSpec{NodeName: "node-1"},
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

func (e *env) launch(t *testing.T, id, n string) (Launched, error) {
	t.Helper()
	p, data := pod(t, n)
	return e.launcher.Launch(context.Background(), id, p, data)
}

// TestLaunchBatchesOneAgent: both reservations of an agent go in one ACCEPT
// (an ACCEPT consumes whole offers), each task carrying its pod's JSON as
// it was given.
func TestLaunchBatchesOneAgent(t *testing.T) {
	e := newEnv(t)
	ra, rb := e.reserve(t, "a"), e.reserve(t, "b")
	before := launchPhaseCounts(t)
	var wg sync.WaitGroup
	got := make([]Launched, 2)
	errs := make([]error, 2)
	for i, c := range []struct{ id, n string }{{ra.ID, "a"}, {rb.ID, "b"}} {
		wg.Add(1)
		go func() { defer wg.Done(); got[i], errs[i] = e.launch(t, c.id, c.n) }()
	}
	wg.Wait()
	for i := range errs {
		if errs[i] != nil {
			t.Fatalf("launch %d: %v", i, errs[i])
		}
		if got[i].BatchSize != 2 || got[i].AgentID != "a1" {
			t.Errorf("launch %d: %+v, want a batch of 2 on a1", i, got[i])
		}
	}
	if want := "pod.uid-a." + ra.ID; got[0].TaskID != want {
		t.Errorf("task id %q, want %s: pod.<pod uid>.<attempt> (pkg/taskinfo)", got[0].TaskID, want)
	}
	if len(e.mesos.launches) != 1 {
		t.Fatalf("%d ACCEPTs, want 1", len(e.mesos.launches))
	}
	// /metrics tells where each pod's Launch spent its time: every phase
	// once per pod.
	after := launchPhaseCounts(t)
	for _, ph := range []string{"admit", "batch_wait", "accept"} {
		if n := after[ph] - before[ph]; n != 2 {
			t.Errorf("k8sm_broker_launch_phase_duration_seconds observations of phase %q after two launches: %d, want 2", ph, n)
		}
	}
	_, want := pod(t, "b")
	if p := e.mesos.pods[0][rb.ID]; p.Ref.Name != "b" || string(p.JSON) != string(want) {
		t.Errorf("Mesos got pod %+v for b, want its JSON as it was given", p)
	}
}

// TestRetriedLaunchGetsTheSameTask: a Launch retried for the same pod and
// attempt (the plugin's call timed out, or its answer was lost) gets the
// task the first one launched: no error, no second ACCEPT.
func TestRetriedLaunchGetsTheSameTask(t *testing.T) {
	e := newEnv(t)
	r := e.reserve(t, "a")
	first, err := e.launch(t, r.ID, "a")
	if err != nil {
		t.Fatal(err)
	}
	again, err := e.launch(t, r.ID, "a")
	if err != nil {
		t.Fatalf("launching a again: %v, want the same task", err)
	}
	if again != first || len(e.mesos.launches) != 1 {
		t.Errorf("retried launch %+v (first %+v) after %d ACCEPTs, want the same task and one ACCEPT", again, first, len(e.mesos.launches))
	}
	p, data := pod(t, "b")
	p.Spec.NodeName = "node-1"
	if _, err := e.launcher.Launch(context.Background(), r.ID, p, data); !errors.Is(err, offers.ErrInvalid) {
		t.Errorf("another pod with a's attempt: %v, want ErrInvalid", err)
	}
}

// TestAttemptsAreDistinctTasks: a pod launched again after a failed launch
// (another reservation) is another task, so that Mesos does not refuse it as
// a duplicate of a task the first ACCEPT may have started, and the first
// attempt's statuses do not touch it.
func TestAttemptsAreDistinctTasks(t *testing.T) {
	e := newEnv(t)
	e.mesos.fail = errors.New("connection refused")
	r1 := e.reserve(t, "a")
	if _, err := e.launch(t, r1.ID, "a"); err == nil {
		t.Fatal("launch with Mesos down succeeded")
	}
	e.mesos.fail = nil
	res := podresources.Resources{Scalars: podresources.Scalars{CPUs: 4000, MemMB: 1024000}}
	e.cache.Add(mesos.Offer{ID: mesos.OfferID{Value: "o2"}, AgentID: mesos.AgentID{Value: "a1"}, Hostname: "node-1", Resources: podresources.ToMesos(res, "*")})
	r2 := e.reserve(t, "a")
	l, err := e.launch(t, r2.ID, "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.mesos.sent) != 2 || e.mesos.sent[0] == e.mesos.sent[1] || e.mesos.sent[1] != l.TaskID || taskinfo.PodUID(l.TaskID) != "uid-a" {
		t.Errorf("the two attempts sent tasks %v, launched %s: want two tasks of the same pod", e.mesos.sent, l.TaskID)
	}
}

// TestAmbiguousAcceptSettledByReconciliation: an ACCEPT whose call failed
// without an answer (a timeout after the master took it) is settled by
// asking Mesos about its tasks: a task the master has is launched, not
// failed; a task it does not have fails the launch, and the pod is retried.
func TestAmbiguousAcceptSettledByReconciliation(t *testing.T) {
	e := newEnv(t)
	e.mesos.fail = fmt.Errorf("ACCEPT call: %w: %w", ErrUnknownOutcome, context.DeadlineExceeded)
	e.mesos.took = true
	r := e.reserve(t, "a")
	l, err := e.launch(t, r.ID, "a")
	if err != nil {
		t.Fatalf("launch the master took, answered by a timeout: %v, want launched", err)
	}
	if want := taskinfo.TaskID("uid-a", r.ID); l.TaskID != want || len(e.mesos.settled) != 1 || e.mesos.settled[0] != want {
		t.Errorf("launched %+v after asking Mesos about %v, want task %s asked about", l, e.mesos.settled, want)
	}

	e.mesos.took = false
	res := podresources.Resources{Scalars: podresources.Scalars{CPUs: 4000, MemMB: 1024000}}
	e.cache.Add(mesos.Offer{ID: mesos.OfferID{Value: "o2"}, AgentID: mesos.AgentID{Value: "a1"}, Hostname: "node-1", Resources: podresources.ToMesos(res, "*")})
	r = e.reserve(t, "b")
	if _, err := e.launch(t, r.ID, "b"); !errors.Is(err, ErrUnknownOutcome) {
		t.Errorf("launch the master never got, answered by a timeout: %v, want it failed", err)
	}
}

// TestLaunchChecksThePod: a pod that is not the reservation's, or not bound
// to its node, reaches no ACCEPT.
func TestLaunchChecksThePod(t *testing.T) {
	e := newEnv(t)
	r := e.reserve(t, "a")
	p, data := pod(t, "b")
	if _, err := e.launcher.Launch(context.Background(), r.ID, p, data); !errors.Is(err, offers.ErrInvalid) {
		t.Errorf("another pod: %v, want ErrInvalid", err)
	}
	p, data = pod(t, "a")
	p.Spec.NodeName = "node-2"
	if _, err := e.launcher.Launch(context.Background(), r.ID, p, data); !errors.Is(err, offers.ErrInvalid) {
		t.Errorf("bound elsewhere: %v, want ErrInvalid", err)
	}
	if _, err := e.launch(t, "nope", "a"); !errors.Is(err, offers.ErrUnknownReservation) {
		t.Errorf("unknown reservation: %v, want ErrUnknownReservation", err)
	}
	if len(e.mesos.launches) != 0 {
		t.Errorf("refused launches reached Mesos: %d", len(e.mesos.launches))
	}
}

// TestLaunchWindowClosesWithoutStragglers: b never launches; the batch waits
// for it window after window, up to MaxBatchWait, then a goes alone and b's
// share of the offer goes back to Mesos with the ACCEPT.
func TestLaunchWindowClosesWithoutStragglers(t *testing.T) {
	e := newEnv(t)
	ra, rb := e.reserve(t, "a"), e.reserve(t, "b")
	done := make(chan error, 1)
	go func() {
		_, err := e.launch(t, ra.ID, "a")
		done <- err
	}()
	var err error
	for waited := false; !waited; {
		select {
		case err = <-done:
			waited = true
		case <-time.After(time.Millisecond):
			if e.clock.HasWaiters() {
				e.clock.Step(time.Second)
			}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if got := e.clock.Since(t0); got < 10*time.Second {
		t.Errorf("a launched after %s, before the batch's longest wait for b (10 windows)", got)
	}
	if _, err = e.launch(t, rb.ID, "b"); !errors.Is(err, offers.ErrLost) {
		t.Errorf("b after a's ACCEPT: %v, want ErrLost", err)
	}
}

// TestLaunchWaitsForAReservedStraggler: b was reserved but asks to launch
// only after a's window closed. The ACCEPT of a would consume the offer that
// holds b too, so a's batch waits for b and both go in one ACCEPT.
func TestLaunchWaitsForAReservedStraggler(t *testing.T) {
	e := newEnv(t)
	ra, rb := e.reserve(t, "a"), e.reserve(t, "b")
	type res struct {
		l   Launched
		err error
	}
	done := make(chan res, 1)
	go func() {
		l, err := e.launch(t, ra.ID, "a")
		done <- res{l, err}
	}()
	for !e.clock.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	e.clock.Step(time.Second) // a's window closes with b reserved but not launching
	lb, err := e.launch(t, rb.ID, "b")
	if err != nil {
		t.Fatalf("b, reserved before a's window closed, could not launch: %v", err)
	}
	la := <-done
	if la.err != nil {
		t.Fatal(la.err)
	}
	if la.l.BatchSize != 2 || lb.BatchSize != 2 || len(e.mesos.launches) != 1 {
		t.Errorf("batch sizes %d and %d in %d ACCEPTs, want both pods in one", la.l.BatchSize, lb.BatchSize, len(e.mesos.launches))
	}
}

// TestFailedAcceptRollsBack: an ACCEPT Mesos did not take fails the launch
// with a *MesosError, and the executor it was to start counts as not
// running, so the next launch on the agent starts it (and pays for it).
func TestFailedAcceptRollsBack(t *testing.T) {
	e := newEnv(t)
	e.mesos.fail = errors.New("connection refused")
	r := e.reserve(t, "a")
	_, err := e.launch(t, r.ID, "a")
	var me *MesosError
	if !errors.As(err, &me) || !errors.Is(err, e.mesos.fail) {
		t.Fatalf("launch with Mesos down: %v, want a *MesosError saying why", err)
	}
	if v, _ := e.cache.Agent("a1"); len(v.ExecutorRoles) != 0 {
		t.Errorf("after a failed ACCEPT the executor runs for %v, want none", v.ExecutorRoles)
	}

	// The ACCEPT spent the offer either way; Mesos offers the agent again.
	e.mesos.fail = nil
	res := podresources.Resources{Scalars: podresources.Scalars{CPUs: 4000, MemMB: 1024000}}
	e.cache.Add(mesos.Offer{ID: mesos.OfferID{Value: "o2"}, AgentID: mesos.AgentID{Value: "a1"}, Hostname: "node-1", Resources: podresources.ToMesos(res, "*")})
	r = e.reserve(t, "b")
	if _, err := e.launch(t, r.ID, "b"); err != nil {
		t.Fatal(err)
	}
	if l := e.mesos.launches[0]; len(l.Executor) == 0 {
		t.Errorf("the launch after a failed ACCEPT does not start the executor: %+v", l)
	}
}

// TestKill drops the pod's claim and kills its task: the attempt it
// launched, or the id without an attempt when it launched none here.
func TestKill(t *testing.T) {
	e := newEnv(t)
	r := e.reserve(t, "a")
	task, err := e.launcher.Kill(context.Background(), "uid-a", "a1")
	if err != nil || task != "pod.uid-a" || len(e.mesos.kills) != 1 || e.mesos.kills[0] != "pod.uid-a" {
		t.Errorf("Kill = %q %v, kills %v", task, err, e.mesos.kills)
	}
	if _, err := e.cache.Get(r.ID); !errors.Is(err, offers.ErrReleased) {
		t.Errorf("the killed pod's reservation: %v, want released", err)
	}

	r = e.reserve(t, "b")
	l, err := e.launch(t, r.ID, "b")
	if err != nil {
		t.Fatal(err)
	}
	task, err = e.launcher.Kill(context.Background(), "uid-b", "a1")
	if err != nil || task != l.TaskID || e.mesos.kills[len(e.mesos.kills)-1] != l.TaskID {
		t.Errorf("Kill of a launched pod = %q %v, kills %v, want its task %s", task, err, e.mesos.kills, l.TaskID)
	}
}

// TestLaunchAdoptsEarlierAttempt: a broker restarted after the master took
// the ACCEPT of attempt 1 of a pod (the broker died before answering, the pod
// stayed unbound) learns of that task by reconciliation; the scheduler's
// Launch of attempt 2 gets the task of attempt 1, which the pod is then bound
// as — on attempt 2's agent, or on another one (attempt 1 uses room there,
// so the spreading scores may prefer another), whose node the answer names.
// No second task is launched, nothing is killed, and attempt 2's reservation
// is released.
func TestLaunchAdoptsEarlierAttempt(t *testing.T) {
	for name, c := range map[string]struct {
		agent, hostname string // where attempt 1 runs
	}{
		"same agent":    {agent: "a1", hostname: "node-1"},
		"another agent": {agent: "a2", hostname: "node-2"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			r2 := podresources.Resources{Scalars: podresources.Scalars{CPUs: 4000, MemMB: 1024000}}
			e.cache.Add(mesos.Offer{ID: mesos.OfferID{Value: "o2"}, AgentID: mesos.AgentID{Value: "a2"}, Hostname: "node-2", Resources: podresources.ToMesos(r2, "*")})
			earlier := taskinfo.TaskID("uid-a", "r-before-restart")
			e.mesos.live = map[string]string{earlier: c.agent} // TASK_STAGING, reconciled
			r := e.reserve(t, "a")                             // on node-1
			l, err := e.launch(t, r.ID, "a")
			if err != nil {
				t.Fatalf("launch of attempt 2 on a1 with attempt 1 live on %s: %v, want attempt 1 adopted", c.agent, err)
			}
			if l.TaskID != earlier || l.AgentID != c.agent || l.Hostname != c.hostname {
				t.Errorf("launched %+v, want the earlier attempt %s on %s (%s)", l, earlier, c.agent, c.hostname)
			}
			if len(e.mesos.sent) != 0 || len(e.mesos.kills) != 0 {
				t.Errorf("sent tasks %v, killed %v: want neither (the pod has one task)", e.mesos.sent, e.mesos.kills)
			}
			if _, err := e.cache.Get(r.ID); err == nil {
				t.Errorf("reservation %s still held after its pod adopted an earlier task", r.ID)
			}
			if again, err := e.launch(t, r.ID, "a"); err != nil || again != l {
				t.Errorf("retried launch: %+v, %v; want %+v again", again, err, l)
			}
		})
	}
}

// TestLaunchRefusedWhileEarlierAttemptCannotBeAdopted: an earlier attempt
// that cannot be adopted — its wildcard host ports may differ from those
// the pod now records, its agent's node is unknown, or the pod has two —
// is killed, and the new Launch is refused, saying why, until it has
// ended: the pod never has two live tasks.
func TestLaunchRefusedWhileEarlierAttemptCannotBeAdopted(t *testing.T) {
	for name, c := range map[string]struct {
		live  map[string]string
		ports bool
		why   string
	}{
		"wildcard ports": {live: map[string]string{taskinfo.TaskID("uid-a", "r0"): "a1"}, ports: true, why: "host ports"},
		"node unknown":   {live: map[string]string{taskinfo.TaskID("uid-a", "r0"): "a9"}, why: "node"},
		"agent unknown":  {live: map[string]string{taskinfo.TaskID("uid-a", "r0"): ""}, why: "agent"},
		"two live tasks": {live: map[string]string{taskinfo.TaskID("uid-a", "r0"): "a1", taskinfo.TaskID("uid-a", "r1"): "a1"}, why: "2 live tasks"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.mesos.live = c.live
			r := e.reserve(t, "a")
			p, data := pod(t, "a")
			if c.ports {
				p.Annotations = map[string]string{taskinfo.HostPortsAnnotation: `[{"containerPort":80,"hostPort":31001}]`}
			}
			_, err := e.launcher.Launch(context.Background(), r.ID, p, data)
			if !errors.Is(err, ErrEarlierAttempt) || !strings.Contains(err.Error(), c.why) {
				t.Fatalf("launch of attempt 2 with %v live: %v, want ErrEarlierAttempt saying %q", c.live, err, c.why)
			}
			if len(e.mesos.sent) != 0 {
				t.Errorf("sent tasks %v, want none while an earlier attempt lives", e.mesos.sent)
			}
			if len(e.mesos.kills) != len(c.live) {
				t.Errorf("killed %v, want every earlier attempt %v", e.mesos.kills, c.live)
			}
			if _, err := e.cache.Get(r.ID); err == nil {
				t.Errorf("reservation %s still held after its launch was refused", r.ID)
			}
		})
	}
}

// result waits for a launch started in the background. The bound is a
// guard against a hang, not a speed limit: a launch that waits for the
// batch window never returns here, since these tests never move the fake
// clock.
func awaitLaunch(t *testing.T, done <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still waiting although the fake clock never moved: the launch waits for the batch window", what)
		return nil
	}
}

// TestLoneLaunchGoesAtOnce: a pod alone on its agent launches without
// waiting for the batch window (the fake clock never moves): nobody else
// could join its ACCEPT.
func TestLoneLaunchGoesAtOnce(t *testing.T) {
	e := newEnv(t)
	r := e.reserve(t, "a")
	done := make(chan error, 1)
	go func() { _, err := e.launch(t, r.ID, "a"); done <- err }()
	if err := awaitLaunch(t, done, "a, the agent's only reservation"); err != nil {
		t.Fatal(err)
	}
	if len(e.mesos.launches) != 1 || e.clock.Since(t0) != 0 {
		t.Errorf("%d ACCEPTs after %s, want one before the window closed", len(e.mesos.launches), e.clock.Since(t0))
	}
}

// TestLaunchGoesOnceTheOtherReservationEnds: a's batch waits for b, reserved
// on the same agent; when b's reservation ends without b asking to launch
// (the scheduler released it, or its pod was deleted), a goes at once
// instead of waiting out the window for a pod that will never ask. b's
// share is not in a's ACCEPT, and b cannot launch afterwards.
func TestLaunchGoesOnceTheOtherReservationEnds(t *testing.T) {
	for name, end := range map[string]func(e *env, rb offers.Reservation){
		"released by the scheduler": func(e *env, rb offers.Reservation) { e.cache.Unreserve(rb.ID, "") },
		"its pod deleted": func(e *env, rb offers.Reservation) {
			if _, err := e.launcher.Kill(context.Background(), rb.Pod.UID, "a1"); err != nil {
				panic(err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			ra, rb := e.reserve(t, "a"), e.reserve(t, "b")
			type res struct {
				l   Launched
				err error
			}
			done := make(chan res, 1)
			go func() {
				l, err := e.launch(t, ra.ID, "a")
				done <- res{l, err}
			}()
			// a's batch is waiting (its window's timer is set) for b.
			for !e.clock.HasWaiters() {
				time.Sleep(time.Millisecond)
			}
			e.mesos.mu.Lock()
			early := len(e.mesos.launches)
			e.mesos.mu.Unlock()
			if early != 0 {
				t.Fatalf("a launched while b, reserved on the same agent, could still ask")
			}
			end(e, rb)
			errc := make(chan error, 1)
			var la Launched
			go func() { r := <-done; la = r.l; errc <- r.err }()
			if err := awaitLaunch(t, errc, "a after b's reservation ended"); err != nil {
				t.Fatal(err)
			}
			if la.BatchSize != 1 || len(e.mesos.launches) != 1 || len(e.mesos.launches[0].Tasks) != 1 {
				t.Errorf("a launched in a batch of %d, %d ACCEPTs, want a alone in one", la.BatchSize, len(e.mesos.launches))
			}
			if _, err := e.launch(t, rb.ID, "b"); err == nil {
				t.Error("b launched after its reservation ended")
			}
		})
	}
}

// launchPhaseCounts reads, from the registry /metrics serves, how many
// durations each phase of Launch has recorded.
func launchPhaseCounts(t *testing.T) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	for _, ph := range []string{"admit", "batch_wait", "accept"} {
		vec, err := testutil.GetHistogramVecFromGatherer(legacyregistry.DefaultGatherer, "k8sm_broker_launch_phase_duration_seconds", map[string]string{"phase": ph})
		if err != nil {
			continue // not observed yet: no series
		}
		out[ph] = vec.GetAggregatedSampleCount()
	}
	return out
}
