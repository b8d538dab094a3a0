package mesosoffers

import (
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
)

// Launches in flight. The broker's ACCEPT takes the agent's offers whole
// (Mesos consumes every offer an ACCEPT names), and the plugin's view shows
// that only once the offer stream delivers the agent's next version. A pod
// placed on the agent in between claims resources the view still shows,
// its Reserve reaches the broker after the offers went, and its bind fails.
// So from the moment Bind decides to launch until the view shows the
// broker's take, the agent holds nothing for a new pod: Filter sends the pod
// elsewhere in the same cycle, or it waits for the agent's next offers.
//
// What the agent keeps (offers the ACCEPT did not name) is not known before
// the stream says: the broker picks the offers. The window is a round trip,
// so a pod that would fit the remainder is sent elsewhere rather than
// guessed onto it; once the stream catches up the view shows the remainder.
//
// A mark never outlives what it waits for: it goes when the view reaches the
// version the broker answered Launch with, at once when the launch failed or
// the answer names no version (an adopted task took no offers; a broker
// older than the field), and with everything else when the watch ends or the
// broker restarted (another epoch's versions say nothing about it). The
// broker stays the only admission point: the mark only keeps the plugin from
// sending it claims it would refuse.

// reasonLaunching is Filter's reason for an agent a launch in flight takes.
const reasonLaunching = "mesos: the node's offers are being accepted for a launch"

// launchMark is one launch the plugin asked of the broker on an agent.
type launchMark struct {
	host string
	// version is the agent's version without the accepted offers
	// (LaunchResponse.resource_version); 0 until the broker answered.
	version uint64
}

// launchMarks holds the marks by host.
type launchMarks map[string]sets.Set[*launchMark]

// launching marks host as taken by a launch of pod uid that Bind is about
// to send, and returns the mark and the outcomes of the other pods' claims
// on host the broker has not answered yet. Those claims were made before
// the mark; once the broker holds their reservations, its batch waits for
// their launches and one ACCEPT takes them all. Claims made after the mark
// are refused (claim), so no claim is left that the launch could overtake.
func (m *mirror) launching(host string, uid types.UID) (*launchMark, []<-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mk := &launchMark{host: host}
	if m.launches[host] == nil {
		m.launches[host] = sets.New[*launchMark]()
	}
	m.launches[host].Insert(mk)
	var unanswered []<-chan struct{}
	for _, c := range m.claims.byHost[host] {
		if c.uid != uid && c.version == 0 && c.done != nil {
			unanswered = append(unanswered, c.done)
		}
	}
	m.recomputeLocked(host)
	return mk, unanswered
}

// launched records the broker's answer to the launch of mk: the version of
// the agent without the offers the ACCEPT took, or 0 when the launch failed
// or took none. It returns the agent when that unmarked it (its resources
// are back in the view, and pods waiting for offers may fit), nil otherwise.
func (m *mirror) launched(mk *launchMark, version uint64) *agent {
	m.mu.Lock()
	defer m.mu.Unlock()
	marks := m.launches[mk.host]
	if !marks.Has(mk) {
		return nil // dropped with the view
	}
	if version == 0 {
		marks.Delete(mk)
	} else {
		mk.version = version
	}
	wasMarked := m.agents[mk.host] != nil && m.agents[mk.host].launching
	a := m.recomputeLocked(mk.host)
	if a == nil || a.launching || !wasMarked {
		return nil
	}
	return a
}

// launchingLocked is whether a launch in flight takes host's offers in a
// view of base version: it forgets the marks the view has caught up with.
func (m *mirror) launchingLocked(host string, version uint64) bool {
	marks := m.launches[host]
	for mk := range marks {
		if mk.version != 0 && version >= mk.version {
			marks.Delete(mk)
		}
	}
	if len(marks) == 0 {
		delete(m.launches, host)
		return false
	}
	return true
}

// launchCount is the number of launches the view waits for.
func (m *mirror) launchCount() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	n := 0
	for _, marks := range m.launches {
		n += marks.Len()
	}
	return n
}
