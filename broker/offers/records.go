package offers

import (
	"encoding/binary"
	"fmt"
	"sort"
	"unique"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/k8sm/k8sm/pkg/mapkey"
	"github.com/k8sm/k8sm/pkg/podresources"
)

// The cache holds one record per outstanding offer and one per agent, for
// every agent of the cluster (10,000 at the size the broker is built for), so
// their size is the broker's memory: a decoded mesos.Offer with its resources
// is about 2 KiB and a one-entry Go map about 700 bytes. The records below
// keep the cache's own summaries in short slices, the resources an ACCEPT
// must send back in their protobuf encoding, and one copy of each distinct
// role name and attribute set.

// roleSum is one role's share of a roleSums.
type roleSum struct {
	role string
	res  podresources.Resources
}

// roleSums is a podresources.ByRole as a short slice: an agent offers one or
// two roles. A roleSums is never modified once stored in a record (set
// returns a new one), so views and snapshots share it without copying.
type roleSums []roleSum

func (s roleSums) get(role string) podresources.Resources {
	for i := range s {
		if s[i].role == role {
			return s[i].res
		}
	}
	return podresources.Resources{}
}

// set returns s with role's resources replaced by r (added when missing).
func (s roleSums) set(role string, r podresources.Resources) roleSums {
	out := make(roleSums, 0, len(s)+1)
	found := false
	for _, e := range s {
		if e.role == role {
			e.res, found = r, true
		}
		out = append(out, e)
	}
	if !found {
		out = append(out, roleSum{role: internRole(role), res: r})
	}
	return out
}

func (s roleSums) isZero() bool {
	for _, e := range s {
		if !e.res.IsZero() {
			return false
		}
	}
	return true
}

// byRole renders s as the map the rest of the broker works with.
func (s roleSums) byRole() podresources.ByRole {
	out := make(podresources.ByRole, len(s))
	for _, e := range s {
		out[e.role] = e.res
	}
	return out
}

// compactRoles is b as a roleSums, sorted by role.
func compactRoles(b podresources.ByRole) roleSums {
	if len(b) == 0 {
		return nil
	}
	out := make(roleSums, 0, len(b))
	for role, r := range b {
		out = append(out, roleSum{role: internRole(role), res: r})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].role < out[j].role })
	return out
}

// internRole returns the one copy of a role name: every offer repeats it.
func internRole(role string) string { return unique.Make(role).Value() }

// encodeResources keeps an offer's resources as the ACCEPT must send them
// back (reservations, allocation info, disk info and all), in their protobuf
// encoding: one allocation of a few hundred bytes instead of a tree of
// pointers. Each resource is prefixed by its length.
func encodeResources(rs []mesos.Resource) ([]byte, error) {
	sizes := make([]int, len(rs))
	total := 0
	for i := range rs {
		sizes[i] = rs[i].Size()
		total += varintLen(uint64(sizes[i])) + sizes[i]
	}
	out := make([]byte, 0, total)
	for i := range rs {
		out = binary.AppendUvarint(out, uint64(sizes[i]))
		n := len(out)
		out = out[:n+sizes[i]]
		if _, err := rs[i].MarshalTo(out[n:]); err != nil {
			return nil, fmt.Errorf("encoding resource %s: %w", rs[i].Name, err)
		}
	}
	return out, nil
}

func varintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// decodeResources is the inverse of encodeResources.
func decodeResources(b []byte) (mesos.Resources, error) {
	var out mesos.Resources
	for len(b) > 0 {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, fmt.Errorf("decoding offered resources: truncated record")
		}
		var r mesos.Resource
		if err := r.Unmarshal(b[k : k+int(n)]); err != nil {
			return nil, fmt.Errorf("decoding offered resources: %w", err)
		}
		out = append(out, r)
		b = b[k+int(n):]
	}
	return out, nil
}

// attrSets holds one rendered map per distinct set of agent attributes: a
// cluster's agents share a few (rack, zone, os), so 10,000 agents need a
// handful of maps instead of 10,000. The maps are never modified.
type attrSets map[string]*attrSet

type attrSet struct {
	attrs map[string]string
	refs  int
}

// use points a at the shared copy of attrs and lets go of the set a held.
func (s attrSets) use(a *agent, attrs map[string]string) {
	key := mapkey.Of(attrs)
	if a.attrKey == key && (key != "" || a.attributes == nil) {
		return
	}
	s.release(a)
	if key == "" {
		return
	}
	set, ok := s[key]
	if !ok {
		set = &attrSet{attrs: attrs}
		s[key] = set
	}
	set.refs++
	a.attributes, a.attrKey = set.attrs, key
}

// release lets go of a's attribute set.
func (s attrSets) release(a *agent) {
	if a.attrKey != "" {
		if set := s[a.attrKey]; set != nil {
			if set.refs--; set.refs <= 0 {
				delete(s, a.attrKey)
			}
		}
	}
	a.attributes, a.attrKey = nil, ""
}
