package mesosoffers

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// Holding pods no offer can hold out of the active queue. In a burst a
// quarter of the scheduling attempts were pods popped before any agent's
// offers could hold them: PreFilter found no agent to name, so Filter ran
// on every node, each one failing, and the serial cycle paid for it what
// binding ten pods costs. PreEnqueue turns such a pod away before it
// reaches the active queue; the scheduler keeps it among its unschedulable
// pods (gated by this plugin) and runs PreEnqueue again whenever the pod is
// activated, updated or moved by an event this plugin registered.
//
// What brings it back:
//   - offers that hold it: the pod is parked (parked.go) before the view is
//     read, so the offer watch activates it once an agent holds it, however
//     the check and the offer race;
//   - PreemptionDelay: a pod may preempt only once it has waited that long
//     for offers (waiters), and preemption runs only in a scheduling cycle,
//     so once it has waited that long it is let through, and a timer
//     activates it then. The wait is the one PostFilter counts, so the
//     pod's first cycle after it may preempt at once;
//   - a Node added or untainted (EventsToRegister), as before.
//
// Nothing is held while the view cannot be trusted (not synced, the broker
// unreachable): no offer event would then wake the pod, and PreFilter says
// why it fails.

// PreEnqueue lets a pod into the active queue when an agent's offers (less
// the plugin's own claims) hold it, when it has waited PreemptionDelay for
// offers, or when the offer view is not usable; it holds every other pod
// back, saying why. The scheduler calls it on every add and update of an
// unscheduled pod and holds its queue's lock meanwhile: it reads only the
// mirror's fit index (a map look-up once the pod's shape is known).
func (pl *MesosOffers) PreEnqueue(ctx context.Context, pod *v1.Pod) *fwk.Status {
	delay := pl.args.PreemptionDelay.Duration
	if delay <= 0 {
		return nil
	}
	d, err := podresources.FromPod(pod)
	if err != nil {
		return nil // PreFilter refuses it, saying why
	}
	if d.Roles, err = pl.policy.Current().Resolve(pod.Namespace, d.Roles); err != nil {
		return nil
	}
	d = d.WithDefaults(podresources.DefaultPodScalars)
	if usable, fits := pl.mirror.usableAndFitsAny(d); !usable || fits {
		return nil
	}
	// Parked, then the view read again: an offer applied after that read
	// activates the pod (parked.offersChanged), one applied before it is
	// seen. Only pods held back are parked here: in a burst the active
	// queue holds thousands, and every offer change would try them all.
	pl.parked.park(pod, d)
	if pl.mirror.fitsAny(d) {
		return nil
	}
	logger := klog.FromContext(ctx)
	left := pl.waiters.left(pod, false, delay, time.Now(), func() {
		pl.handle.Activate(logger, map[string]*v1.Pod{string(pod.UID): pod})
	})
	if left <= 0 {
		return nil
	}
	return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf(
		"mesos: no agent's offers hold the pod (%s); it waits for offers, at most %s more (preemptionDelay %s), before a scheduling attempt",
		d, left.Round(time.Millisecond), delay))
}
