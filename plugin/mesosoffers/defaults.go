package mesosoffers

import (
	"strings"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// DefaultResourcesReason is the reason of the event that tells a pod's owner
// what Mesos charged for the cpus or memory the pod does not request.
const DefaultResourcesReason = "MesosDefaultResources"

// recordDefaults records, on a pod that requests no cpus or no memory, what
// its task was charged instead (the broker's --default-pod-cpus and
// --default-pod-mem), so that `kubectl describe pod` says why Mesos counts
// resources the spec does not name.
func (pl *MesosOffers) recordDefaults(state fwk.CycleState, pod *v1.Pod, r *brokerv1.Reservation) {
	ds, err := demandStateFrom(state)
	if err != nil {
		return
	}
	claim := brokerapi.ResourcesFromProto(r.GetResources())
	var missing, charged []string
	if ds.requested.CPUs == 0 && claim.CPUs > 0 {
		missing, charged = append(missing, "cpu"), append(charged, claim.CPUs.String()+" cpus")
	}
	if ds.requested.MemMB == 0 && claim.MemMB > 0 {
		missing, charged = append(missing, "memory"), append(charged, claim.MemMB.String()+" MB of memory")
	}
	rec := pl.handle.EventRecorder()
	if len(charged) == 0 || rec == nil {
		return
	}
	rec.Eventf(pod, nil, v1.EventTypeNormal, DefaultResourcesReason, "Binding",
		"The pod requests no %s; its Mesos task is charged %s (the k8sm broker's --default-pod-cpus and --default-pod-mem)",
		strings.Join(missing, " and "), strings.Join(charged, " and "))
}
