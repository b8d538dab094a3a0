package grpcserver

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/brokerapi"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// AgentToProto converts one agent's view.
func AgentToProto(v offers.AgentView) *brokerv1.Agent {
	return &brokerv1.Agent{
		AgentId:         v.ID,
		Hostname:        v.Hostname,
		Attributes:      v.Attributes,
		Available:       brokerapi.ByRoleToProto(v.Available),
		Capacity:        brokerapi.ByRoleToProto(v.Capacity),
		ExecutorRoles:   v.ExecutorRoles,
		ResourceVersion: v.Version,
	}
}

// eventToProto converts a watch event; a snapshot carries the cache's epoch.
func eventToProto(ev offers.Event, epoch string) *brokerv1.WatchOffersResponse {
	out := &brokerv1.WatchOffersResponse{ResourceVersion: ev.Version}
	switch ev.Type {
	case offers.EventSnapshot:
		s := &brokerv1.Snapshot{Agents: make([]*brokerv1.Agent, 0, len(ev.Agents)), Epoch: epoch}
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
		Resources: brokerapi.ResourcesToProto(r.Claim),
		ExpiresAt: timestamppb.New(r.Expires),
	}
	for _, p := range r.WildcardPorts {
		out.WildcardHostPorts = append(out.WildcardHostPorts, uint32(p))
	}
	return out
}
