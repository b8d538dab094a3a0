package mesosoffers

import (
	"fmt"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// snapshotChunks puts together a snapshot the broker sends in chunks
// (Snapshot.more), so that the mirror is replaced once, by the whole view: a
// partial snapshot would make every agent of the chunks still to come look
// gone. Chunks that do not belong together (another epoch or version, or any
// other event between them) break the stream's contract; the watch then ends
// and starts again with a fresh snapshot.
type snapshotChunks struct {
	pending *brokerv1.WatchOffersResponse
}

// add takes the next event of the stream and returns the event to apply: ev
// itself, a whole snapshot once its last chunk came, or nil while chunks are
// missing.
func (s *snapshotChunks) add(ev *brokerv1.WatchOffersResponse) (*brokerv1.WatchOffersResponse, error) {
	snap := ev.GetSnapshot()
	if s.pending == nil {
		if snap == nil || !snap.GetMore() {
			return ev, nil
		}
		s.pending = &brokerv1.WatchOffersResponse{ResourceVersion: ev.GetResourceVersion(), Event: &brokerv1.WatchOffersResponse_Snapshot{
			Snapshot: &brokerv1.Snapshot{Epoch: snap.GetEpoch(), Agents: snap.GetAgents()}}}
		return nil, nil
	}
	have := s.pending.GetSnapshot()
	switch {
	case snap == nil:
		return nil, fmt.Errorf("the broker sent an offer event in the middle of a snapshot (after %d agents of version %d)", len(have.GetAgents()), s.pending.GetResourceVersion())
	case snap.GetEpoch() != have.GetEpoch() || ev.GetResourceVersion() != s.pending.GetResourceVersion():
		return nil, fmt.Errorf("a snapshot chunk of epoch %s version %d came in the middle of the snapshot of epoch %s version %d", snap.GetEpoch(), ev.GetResourceVersion(), have.GetEpoch(), s.pending.GetResourceVersion())
	}
	have.Agents = append(have.Agents, snap.GetAgents()...)
	if snap.GetMore() {
		return nil, nil
	}
	whole := s.pending
	s.pending = nil
	return whole, nil
}
