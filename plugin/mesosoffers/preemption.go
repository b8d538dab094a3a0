package mesosoffers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// Preemption through Mesos offers. The stock DefaultPreemption finds victims
// by a dry run: it removes lower-priority pods from a copy of the node
// (PreFilterExtensions.RemovePod), adds some back (AddPod) and runs the
// filters again. A pod bound to an agent runs as a Mesos task whose
// resources Mesos offers again once the task ends, so removing it in the dry
// run gives its task's resources back to that agent's room. The scheduler
// also adds the pods nominated to a node (higher or equal priority) before
// filtering a pod there; such a pod is not bound yet and will take offers,
// so adding it takes its demand out of the room. That is what keeps the
// resources a preemption freed for the preemptor: a lower-priority pod does
// not fit in what the nominated pod will take.
//
// Every agent stays a candidate for preemption: Filter answers Unschedulable
// (never UnschedulableAndUnresolvable) for want of offers, and a
// PreFilterResult must not leave out agents where removing pods could make
// room, as the stock preemption skips nodes outside it.

const roomKey fwk.StateKey = Name + "/room"

// roomState holds what this cycle's dry runs changed about agents' room,
// by node name; a node without an entry has exactly its offers. It is empty
// for an ordinary Filter, so the common path costs one map lookup.
type roomState struct {
	nodes map[string]*roomChange
	// fitsNoAgent says PreFilter found no agent that could ever hold the
	// pod: evicting pods cannot help, so PostFilter does not make it wait.
	fitsNoAgent bool
}

// roomChange is one node's change of room.
type roomChange struct {
	// freed are the task resources of pods removed from the node, by role
	// (a pod added back takes them again).
	freed podresources.ByRole
	// nominated are pods added to the node that are not bound yet: they
	// take offers before the pod being filtered.
	nominated []nominatedDemand
}

type nominatedDemand struct {
	uid    types.UID
	demand podresources.Demand
}

// Clone copies the changes: the dry run clones the state for every node it
// tries, and each copy must change alone.
func (s *roomState) Clone() fwk.StateData {
	out := &roomState{fitsNoAgent: s.fitsNoAgent}
	if len(s.nodes) > 0 {
		out.nodes = make(map[string]*roomChange, len(s.nodes))
		for n, c := range s.nodes {
			out.nodes[n] = &roomChange{freed: c.freed.Clone(), nominated: slices.Clone(c.nominated)}
		}
	}
	return out
}

func (s *roomState) change(node string) *roomChange {
	if s.nodes == nil {
		s.nodes = map[string]*roomChange{}
	}
	c := s.nodes[node]
	if c == nil {
		c = &roomChange{freed: podresources.ByRole{}}
		s.nodes[node] = c
	}
	return c
}

// roomStateFrom reads the cycle's room state, starting one when PreFilter
// wrote none (the extensions may be called on a state another profile
// prepared).
func roomStateFrom(state fwk.CycleState) *roomState {
	if s, err := state.Read(roomKey); err == nil {
		return s.(*roomState)
	}
	s := &roomState{}
	state.Write(roomKey, s)
	return s
}

// room is what agent a can hold for the pod being filtered: its offers,
// plus the resources of the tasks the dry run removed, minus what the
// pods nominated to it will take. changed says whether that differs from
// a.available (only a dry run or nominated pods change it; then it is a
// copy).
func room(state fwk.CycleState, a *agent) (_ podresources.ByRole, changed bool) {
	s, err := state.Read(roomKey)
	if err != nil {
		return a.available, false
	}
	c := s.(*roomState).nodes[a.hostname]
	if c == nil {
		return a.available, false
	}
	out := a.available.Clone()
	for role, r := range c.freed {
		out[role] = out[role].Add(r)
	}
	for _, n := range c.nominated {
		// A nominated pod that does not fit yet (its victims' resources not
		// offered again) still has the room it will need kept from pods of
		// lower priority, as the stock NodeResourcesFit counts it.
		if role, short := out.Fit(n.demand); short.Fits() {
			claim, _, _ := out[role].Claim(n.demand)
			out[role] = out[role].Subtract(claim)
			continue
		}
		if role := roleOf(n.demand, a); role != "" {
			out[role] = out[role].Subtract(n.demand.ToResources())
		}
	}
	return out, true
}

// roleOf is the role of a's resources a pod with demand d draws from when
// nothing says which: the first role (sorted) d may use that the agent has
// ever offered. Agents with resources of one role, the common case, have no
// choice to make.
func roleOf(d podresources.Demand, a *agent) string {
	for _, role := range a.capacity.Roles() {
		if d.AllowsRole(role) {
			return role
		}
	}
	return ""
}

// taskResources are the resources the Mesos task of p, bound to agent a,
// holds there: its demand with the default charge and the host ports it
// binds, fixed and chosen by k8sm (recorded on the pod).
func taskResources(p *v1.Pod, a *agent) (string, podresources.Resources, error) {
	d, err := podresources.FromPod(p)
	if err != nil {
		return "", podresources.Resources{}, err
	}
	d = d.WithDefaults(podresources.DefaultPodScalars)
	ports := podresources.PortsOf(d.HostPorts...)
	as, err := podresources.PortAssignmentsOf(p)
	if err != nil {
		return "", podresources.Resources{}, err
	}
	for _, pa := range as {
		ports = ports.Union(podresources.PortsOf(uint64(uint32(pa.HostPort))))
	}
	return roleOf(d, a), podresources.Resources{Scalars: d.Scalars, Ports: ports}, nil
}

// PreFilterExtensions are AddPod and RemovePod: other pods do not change
// Mesos offers, but in the scheduler's what-ifs (preemption, nominated
// pods) they change what an agent's offers will hold.
func (pl *MesosOffers) PreFilterExtensions() fwk.PreFilterExtensions { return pl }

// AddPod takes p's resources from the node's room: a nominated pod's demand,
// or the task resources of a bound pod the dry run removed before.
func (pl *MesosOffers) AddPod(ctx context.Context, state fwk.CycleState, _ *v1.Pod, info fwk.PodInfo, nodeInfo fwk.NodeInfo) *fwk.Status {
	pl.changeRoom(ctx, state, info.GetPod(), nodeInfo, true)
	return nil
}

// RemovePod gives p's resources back to the node's room: the task
// resources of a bound pod (a preemption victim), or the demand of a
// nominated pod added before.
func (pl *MesosOffers) RemovePod(ctx context.Context, state fwk.CycleState, _ *v1.Pod, info fwk.PodInfo, nodeInfo fwk.NodeInfo) *fwk.Status {
	pl.changeRoom(ctx, state, info.GetPod(), nodeInfo, false)
	return nil
}

func (pl *MesosOffers) changeRoom(ctx context.Context, state fwk.CycleState, p *v1.Pod, nodeInfo fwk.NodeInfo, add bool) {
	node := nodeInfo.Node()
	if node == nil {
		return
	}
	a := pl.mirror.get(node.Name)
	if a == nil {
		// Not an agent with offers: Filter turns the node away whatever
		// pods it holds.
		return
	}
	logger := klog.FromContext(ctx)
	s := roomStateFrom(state)
	if p.Spec.NodeName == "" {
		d, err := podresources.FromPod(p)
		if err != nil {
			// Such a pod is never placed, so it takes nothing.
			return
		}
		d = d.WithDefaults(podresources.DefaultPodScalars)
		c := s.change(a.hostname)
		c.nominated = slices.DeleteFunc(c.nominated, func(n nominatedDemand) bool { return n.uid == p.UID })
		if add {
			c.nominated = append(c.nominated, nominatedDemand{uid: p.UID, demand: d})
		}
		return
	}
	if p.Spec.NodeName != a.hostname || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
		// No task of the pod holds resources of this agent.
		return
	}
	role, res, err := taskResources(p, a)
	if err != nil || role == "" {
		logger.V(4).Info("Cannot tell what the pod's task holds; the dry run leaves it", "pod", klog.KObj(p), "node", a.hostname, "err", err)
		return
	}
	c := s.change(a.hostname)
	if add {
		c.freed[role] = c.freed[role].Subtract(res)
	} else {
		c.freed[role] = c.freed[role].Add(res)
	}
	logger.V(5).Info("Dry run changed the agent's room", "pod", klog.KObj(p), "node", a.hostname, "role", role, "resources", res.String(), "removed", !add)
}

// Waiting for offers before preempting. The broker declines offers no pod
// needs and suppresses offers while no pod is pending, so an agent's free
// resources are missing from the view until the broker revives offers for
// a new pod and Mesos answers. The scheduler runs preemption as soon as
// Filter fails, which would happen before that answer: a pod would preempt
// lower-priority pods although free resources were about to be offered. So
// a pod may preempt only once it has waited PreemptionDelay for offers;
// meanwhile MesosOffers' PostFilter, which runs before DefaultPreemption
// in the profile, answers UnschedulableAndUnresolvable (which ends the
// PostFilter phase) and the pod is activated again when the delay ends.
//
// The same wait follows the deletion of a pod on the node a pod is
// nominated to: the victims' pod objects go before Mesos offers their
// resources again, and the scheduler retries the nominated pod as soon as
// a pod on its node is deleted (DefaultPreemption's queueing hint). Without
// the wait, that retry found the node still full and preempted again. Two
// signs say the resources are on their way: the plugin saw a pod bound to
// that node deleted, or every filter but MesosOffers passes the node (the
// scheduler counts the victims gone, Mesos has not offered their resources
// yet). The second needs no ordering between informer handlers.

// waiters remembers since when each pod has waited for offers, and when a
// bound pod was last deleted on each node.
type waiters struct {
	mu     sync.Mutex
	since  map[types.UID]time.Time
	timers map[types.UID]*time.Timer
	freed  map[string]time.Time
	// offersLag is when a pod was first found held back on its nominated
	// node by MesosOffers alone, and which node that was.
	offersLag map[types.UID]nodeSince
}

type nodeSince struct {
	node string
	at   time.Time
}

func newWaiters() *waiters {
	return &waiters{
		since:     map[types.UID]time.Time{},
		timers:    map[types.UID]*time.Timer{},
		freed:     map[string]time.Time{},
		offersLag: map[types.UID]nodeSince{},
	}
}

// deleted notes that a pod bound to node was deleted now: its task's
// resources are on their way back to the offers.
func (w *waiters) deleted(node string, now time.Time) {
	w.mu.Lock()
	w.freed[node] = now
	w.mu.Unlock()
}

// start notes that the pod waits from now unless it waited already.
func (w *waiters) start(uid types.UID, now time.Time) {
	w.mu.Lock()
	if _, ok := w.since[uid]; !ok {
		w.since[uid] = now
	}
	w.mu.Unlock()
}

// done forgets a pod that was placed or deleted.
func (w *waiters) done(uid types.UID) {
	w.mu.Lock()
	delete(w.since, uid)
	delete(w.offersLag, uid)
	if t := w.timers[uid]; t != nil {
		t.Stop()
		delete(w.timers, uid)
	}
	w.mu.Unlock()
}

// left returns how much longer the pod waits before it may preempt; when
// that is more than zero, wake is called once it has passed (once per pod).
// offersLag says only MesosOffers held the pod back on its nominated node.
func (w *waiters) left(pod *v1.Pod, offersLag bool, delay time.Duration, now time.Time, wake func()) time.Duration {
	uid := pod.UID
	w.mu.Lock()
	defer w.mu.Unlock()
	since, ok := w.since[uid]
	if !ok {
		since = now
		w.since[uid] = now
	}
	if n := pod.Status.NominatedNodeName; n != "" {
		if at, ok := w.freed[n]; ok && at.After(since) {
			since = at
		}
		if offersLag {
			lag, ok := w.offersLag[uid]
			if !ok || lag.node != n {
				lag = nodeSince{node: n, at: now}
				w.offersLag[uid] = lag
			}
			if lag.at.After(since) {
				since = lag.at
			}
		}
	}
	for n, at := range w.freed {
		if now.Sub(at) > delay {
			delete(w.freed, n)
		}
	}
	d := since.Add(delay).Sub(now)
	if d <= 0 {
		return 0
	}
	if w.timers[uid] == nil {
		w.timers[uid] = time.AfterFunc(d, func() {
			w.mu.Lock()
			delete(w.timers, uid)
			w.mu.Unlock()
			wake()
		})
	}
	return d
}

// PostFilter lets the preemption plugins after it run only for a pod that
// has waited PreemptionDelay for offers (see waiters).
func (pl *MesosOffers) PostFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, m fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	leftOut := pl.leftOut(ctx, state, pod)
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever {
		return nil, fwk.NewStatus(fwk.Unschedulable, leftOut...)
	}
	if s, err := state.Read(roomKey); err == nil && s.(*roomState).fitsNoAgent {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	logger := klog.FromContext(ctx)
	offersLag := false
	if n := pod.Status.NominatedNodeName; n != "" && m != nil {
		st := m.Get(n)
		offersLag = st != nil && st.Plugin() == Name && st.Code() == fwk.Unschedulable
	}
	left := pl.waiters.left(pod, offersLag, pl.args.PreemptionDelay.Duration, time.Now(), func() {
		pl.handle.Activate(logger, map[string]*v1.Pod{string(pod.UID): pod})
	})
	if left > 0 {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, append(leftOut,
			fmt.Sprintf("mesos: waiting %s more for offers before preempting (preemptionDelay %s)", left.Round(time.Second), pl.args.PreemptionDelay.Duration))...)
	}
	return nil, fwk.NewStatus(fwk.Unschedulable, leftOut...)
}
