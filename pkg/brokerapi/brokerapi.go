// Package brokerapi is the Broker API's shared side (proto/broker/v1): the
// service's name and the conversions between its messages and the
// podresources types both ends compute with. The scheduler plugin builds on
// it and on the generated client alone, so that the kube-scheduler binary
// links nothing of the broker; the broker's server uses the same conversions.
package brokerapi

import (
	"fmt"
	"math"

	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// ServiceName is the Broker service's name, as the gRPC health service
// reports it: only the replica that serves offers (the elected leader,
// subscribed to Mesos) is SERVING under it.
const ServiceName = "k8sm.broker.v1.Broker"

// DemandFromProto validates and converts a wire demand.
func DemandFromProto(d *brokerv1.Demand) (podresources.Demand, error) {
	if d == nil {
		return podresources.Demand{}, nil
	}
	var out podresources.Demand
	for _, f := range []struct {
		name string
		v    float64
		dst  *podresources.Milli
	}{
		{podresources.CPUs, d.GetCpus(), &out.CPUs},
		{podresources.Mem, d.GetMemMb(), &out.MemMB},
		{podresources.Disk, d.GetDiskMb(), &out.DiskMB},
		{podresources.GPUs, d.GetGpus(), &out.GPUs},
	} {
		if math.IsNaN(f.v) || math.IsInf(f.v, 0) || math.Abs(f.v) > 1e15 {
			return podresources.Demand{}, fmt.Errorf("%s = %v is not a usable amount", f.name, f.v)
		}
		*f.dst = podresources.MilliFromFloat(f.v)
	}
	for _, p := range d.GetHostPorts() {
		out.HostPorts = append(out.HostPorts, uint64(p))
	}
	out.HostPorts = podresources.PortsOf(out.HostPorts...).Ports()
	out.WildcardPorts = int(d.GetWildcardPorts())
	out.Roles = d.GetRoles()
	if err := out.Validate(); err != nil {
		return podresources.Demand{}, err
	}
	return out, nil
}

// DemandToProto is the inverse of DemandFromProto.
func DemandToProto(d podresources.Demand) *brokerv1.Demand {
	out := &brokerv1.Demand{
		Cpus:          d.CPUs.Float(),
		MemMb:         d.MemMB.Float(),
		DiskMb:        d.DiskMB.Float(),
		Gpus:          d.GPUs.Float(),
		WildcardPorts: int32(d.WildcardPorts),
		Roles:         d.Roles,
	}
	for _, p := range d.HostPorts {
		out.HostPorts = append(out.HostPorts, uint32(p))
	}
	return out
}

// ResourcesToProto converts an amount of resources.
func ResourcesToProto(r podresources.Resources) *brokerv1.Resources {
	out := &brokerv1.Resources{Cpus: r.CPUs.Float(), MemMb: r.MemMB.Float(), DiskMb: r.DiskMB.Float(), Gpus: r.GPUs.Float()}
	for _, span := range r.Ports {
		out.Ports = append(out.Ports, &brokerv1.PortRange{Begin: span.Begin, End: span.End})
	}
	return out
}

// ResourcesFromProto is the inverse of ResourcesToProto.
func ResourcesFromProto(r *brokerv1.Resources) podresources.Resources {
	out := podresources.Resources{Scalars: podresources.Scalars{
		CPUs:   podresources.MilliFromFloat(r.GetCpus()),
		MemMB:  podresources.MilliFromFloat(r.GetMemMb()),
		DiskMB: podresources.MilliFromFloat(r.GetDiskMb()),
		GPUs:   podresources.MilliFromFloat(r.GetGpus()),
	}}
	spans := make([]podresources.Range, 0, len(r.GetPorts()))
	for _, p := range r.GetPorts() {
		spans = append(spans, podresources.Range{Begin: p.GetBegin(), End: p.GetEnd()})
	}
	out.Ports = podresources.NewRanges(spans...)
	return out
}

// ByRoleToProto converts per-role resources, in the order of their roles.
func ByRoleToProto(b podresources.ByRole) []*brokerv1.RoleResources {
	out := make([]*brokerv1.RoleResources, 0, len(b))
	for _, role := range b.Roles() {
		out = append(out, &brokerv1.RoleResources{Role: role, Resources: ResourcesToProto(b[role])})
	}
	return out
}

// ByRoleFromProto is the inverse of ByRoleToProto.
func ByRoleFromProto(rs []*brokerv1.RoleResources) podresources.ByRole {
	out := make(podresources.ByRole, len(rs))
	for _, r := range rs {
		out[r.GetRole()] = ResourcesFromProto(r.GetResources())
	}
	return out
}
