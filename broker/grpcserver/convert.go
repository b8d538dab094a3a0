package grpcserver

import (
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
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

// eventToProto converts a watch event other than a snapshot.
func eventToProto(ev offers.Event) *brokerv1.WatchOffersResponse {
	out := &brokerv1.WatchOffersResponse{ResourceVersion: ev.Version}
	switch ev.Type {
	case offers.EventUpdated:
		out.Event = &brokerv1.WatchOffersResponse_Updated{Updated: AgentToProto(ev.Agent)}
	case offers.EventRemoved:
		out.Event = &brokerv1.WatchOffersResponse_Removed{Removed: &brokerv1.AgentRemoved{AgentId: ev.Removed.ID, Hostname: ev.Removed.Hostname}}
	}
	return out
}

// sendSnapshot sends a snapshot event as chunks of at most about maxBytes of
// agents each (Snapshot.more on all but the last), every chunk carrying the
// cache's epoch and the snapshot's version. Agents are converted a chunk at a
// time, so the whole view never exists as messages at once.
func sendSnapshot(send func(*brokerv1.WatchOffersResponse) error, ev offers.Event, epoch string, maxBytes int) error {
	chunk := &brokerv1.Snapshot{Epoch: epoch}
	size := 0
	flush := func(more bool) error {
		chunk.More = more
		err := send(&brokerv1.WatchOffersResponse{ResourceVersion: ev.Version, Event: &brokerv1.WatchOffersResponse_Snapshot{Snapshot: chunk}})
		chunk, size = &brokerv1.Snapshot{Epoch: epoch}, 0
		return err
	}
	for i := range ev.Agents.Len() {
		a := AgentToProto(ev.Agents.View(i))
		// The agent's bytes plus its field's tag and length.
		n := proto.Size(a)
		n += 1 + protowire.SizeVarint(uint64(n))
		if len(chunk.Agents) > 0 && size+n > maxBytes {
			if err := flush(true); err != nil {
				return err
			}
		}
		chunk.Agents = append(chunk.Agents, a)
		size += n
	}
	return flush(false)
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
