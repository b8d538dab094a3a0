package grpcserver

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// DemandFromProto validates and converts a wire demand. It is exported for
// the plugin, which builds requests with DemandToProto and may check them the
// same way.
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

// ResourcesFromProto converts an amount of resources, as the plugin's mirror
// needs it.
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

func byRoleToProto(b podresources.ByRole) []*brokerv1.RoleResources {
	out := make([]*brokerv1.RoleResources, 0, len(b))
	for _, role := range b.Roles() {
		out = append(out, &brokerv1.RoleResources{Role: role, Resources: ResourcesToProto(b[role])})
	}
	return out
}

// ByRoleFromProto converts per-role resources of an Agent message.
func ByRoleFromProto(rs []*brokerv1.RoleResources) podresources.ByRole {
	out := make(podresources.ByRole, len(rs))
	for _, r := range rs {
		out[r.GetRole()] = ResourcesFromProto(r.GetResources())
	}
	return out
}

// AgentToProto converts one agent's view.
func AgentToProto(v offers.AgentView) *brokerv1.Agent {
	return &brokerv1.Agent{
		AgentId:         v.ID,
		Hostname:        v.Hostname,
		Attributes:      v.Attributes,
		Available:       byRoleToProto(v.Available),
		Capacity:        byRoleToProto(v.Capacity),
		ExecutorRoles:   v.ExecutorRoles,
		ResourceVersion: v.Version,
	}
}

func eventToProto(ev offers.Event) *brokerv1.WatchOffersResponse {
	out := &brokerv1.WatchOffersResponse{ResourceVersion: ev.Version}
	switch ev.Type {
	case offers.EventSnapshot:
		s := &brokerv1.Snapshot{Agents: make([]*brokerv1.Agent, 0, len(ev.Agents))}
		for _, a := range ev.Agents {
			s.Agents = append(s.Agents, AgentToProto(a))
		}
		out.Event = &brokerv1.WatchOffersResponse_Snapshot{Snapshot: s}
	case offers.EventUpdated:
		out.Event = &brokerv1.WatchOffersResponse_Updated{Updated: AgentToProto(ev.Agent)}
	case offers.EventRemoved:
		out.Event = &brokerv1.WatchOffersResponse_Removed{Removed: &brokerv1.AgentRemoved{AgentId: ev.Removed.ID, Hostname: ev.Removed.Hostname}}
	}
	return out
}

func reservationToProto(r offers.Reservation) *brokerv1.Reservation {
	out := &brokerv1.Reservation{
		Id:        r.ID,
		Pod:       &brokerv1.PodRef{Uid: string(r.Pod.UID), Namespace: r.Pod.Namespace, Name: r.Pod.Name},
		AgentId:   r.AgentID,
		NodeName:  r.Hostname,
		Role:      r.Role,
		Resources: ResourcesToProto(r.Claim),
		ExpiresAt: timestamppb.New(r.Expires),
	}
	for _, p := range r.WildcardPorts {
		out.WildcardHostPorts = append(out.WildcardHostPorts, uint32(p))
	}
	return out
}
