package mesosoffers

import (
	"context"

	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// Signature fragments of MesosOffers (fwk.SignFragment keys, named as
// k8s.io/kube-scheduler/framework/signers.go names its own).
const (
	// DemandSignerName is the pod's Mesos demand as podresources.FromPod
	// computes it: cpus, mem, disk and gpus (requests as NodeResourcesFit
	// counts them, init containers and overhead included), fixed host ports
	// (init containers' too), how many wildcard ports, and the roles of its
	// k8sm.io/roles annotation.
	DemandSignerName = "v1.Pod.MesosDemand()"
	// NamespaceSignerName is the pod's namespace: the role policy decides
	// per namespace which roles the pod may draw from.
	NamespaceSignerName = "v1.Pod.Namespace"
)

// SignPod lets the scheduler's opportunistic batching (feature gate
// OpportunisticBatching, on by default since Kubernetes 1.35) reuse one
// pod's filtered and scored nodes for the next pod of the same signature,
// when args.opportunisticBatching is on.
//
// What the scheduler does with it (pkg/scheduler/framework/runtime/batch.go):
// after a pod is placed, the nodes it found feasible, sorted by score, are
// kept for at most 500 ms; the next pod of the same profile whose signature
// is equal gets the best of them as a hint, and the hint goes through every
// Filter plugin again — MesosOffers' Filter against the offer mirror as it
// is then, with that pod's own PreFilter state (demand, roles its policy
// allows, tolerations). A hint whose offers are gone fails that Filter and
// the pod is scheduled the ordinary way. So offers that change outside the
// scheduler's snapshot never place a pod where Mesos has no room; at worst
// a pod gets a node ranked on a list up to 500 ms old, as any batched pod
// does with the stock plugins.
//
// The signature must therefore hold everything MesosOffers' feasibility
// depends on, so that two pods with equal signatures are feasible on the
// same agents: the Mesos demand (DemandSignerName, which holds the meaning
// of the k8sm.io/ annotations k8sm reads on a pod not yet placed — roles
// and wildcard-ports; FromPod refuses any other there), the namespace (the
// role policy resolves roles per namespace), and the tolerations (this
// profile applies taints in MesosOffers' Filter). MesosOffers scores
// nothing. A pod whose demand is invalid is not signed: PreFilter turns it
// away anyway.
//
// Every filter and score plugin of the profile must sign a pod for it to be
// batched. Upstream's PodTopologySpread refuses while it has default
// constraints, which its default (defaultingType: System) has, so the
// profile must also give it defaultingType: List (no default constraints)
// for batching to happen at all.
func (pl *MesosOffers) SignPod(_ context.Context, pod *v1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	if pl.args.OpportunisticBatching == nil || !*pl.args.OpportunisticBatching {
		return nil, fwk.NewStatus(fwk.Unschedulable, "MesosOffers args.opportunisticBatching is off")
	}
	d, err := podresources.FromPod(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.Unschedulable, "mesos: "+err.Error())
	}
	return []fwk.SignFragment{
		{Key: DemandSignerName, Value: demandSignature(d)},
		{Key: NamespaceSignerName, Value: pod.Namespace},
		{Key: fwk.TolerationsSignerName, Value: fwk.TolerationsSigner(pod)},
	}, nil
}

// demandSig is a Demand in a fixed JSON shape: empty lists and absent ones
// sign alike, and FromPod sorts ports and roles.
type demandSig struct {
	CPUs, MemMB, DiskMB, GPUs podresources.Milli
	HostPorts                 []uint64 `json:",omitempty"`
	WildcardPorts             int
	Roles                     []string `json:",omitempty"`
}

func demandSignature(d podresources.Demand) demandSig {
	return demandSig{CPUs: d.CPUs, MemMB: d.MemMB, DiskMB: d.DiskMB, GPUs: d.GPUs,
		HostPorts: d.HostPorts, WildcardPorts: d.WildcardPorts, Roles: d.Roles}
}
