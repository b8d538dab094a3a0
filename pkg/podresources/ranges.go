package podresources

import (
	"sort"
	"strconv"
	"strings"
)

// Range is an inclusive span of port numbers, as in Mesos's Value.Range.
type Range struct {
	Begin, End uint64
}

// Ranges is a normalised set of ports: sorted, non-overlapping, non-adjacent.
// Every method returns a new value and leaves its receiver untouched, so a
// Ranges can be shared between readers of a snapshot.
type Ranges []Range

// NewRanges normalises arbitrary spans (unsorted, overlapping, adjacent).
func NewRanges(spans ...Range) Ranges {
	var out Ranges
	for _, s := range spans {
		out = out.Union(Ranges{s})
	}
	return out
}

// PortsOf returns the set holding exactly the given ports.
func PortsOf(ports ...uint64) Ranges {
	spans := make([]Range, 0, len(ports))
	for _, p := range ports {
		spans = append(spans, Range{p, p})
	}
	return NewRanges(spans...)
}

func normalise(spans []Range) Ranges {
	if len(spans) == 0 {
		return nil
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].Begin < spans[j].Begin })
	out := make(Ranges, 0, len(spans))
	for _, s := range spans {
		if s.End < s.Begin {
			continue
		}
		if n := len(out); n > 0 && s.Begin <= out[n-1].End+1 {
			if s.End > out[n-1].End {
				out[n-1].End = s.End
			}
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// Size is the number of ports in the set.
func (rs Ranges) Size() uint64 {
	var n uint64
	for _, r := range rs {
		n += r.End - r.Begin + 1
	}
	return n
}

// Contains reports whether port p is in the set.
func (rs Ranges) Contains(p uint64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].End >= p })
	return i < len(rs) && rs[i].Begin <= p
}

// ContainsAll reports whether every port of other is in rs.
func (rs Ranges) ContainsAll(other Ranges) bool {
	for _, o := range other {
		i := sort.Search(len(rs), func(i int) bool { return rs[i].End >= o.Begin })
		if i == len(rs) || rs[i].Begin > o.Begin || rs[i].End < o.End {
			return false
		}
	}
	return true
}

// Union returns the ports in either set.
func (rs Ranges) Union(other Ranges) Ranges {
	spans := make([]Range, 0, len(rs)+len(other))
	spans = append(spans, rs...)
	spans = append(spans, other...)
	return normalise(spans)
}

// Minus returns the ports of rs that are not in other.
func (rs Ranges) Minus(other Ranges) Ranges {
	out := make([]Range, 0, len(rs)+1)
	j := 0
	for _, r := range rs {
		cur := r
		for j < len(other) && other[j].End < cur.Begin {
			j++
		}
		k := j
		consumed := false
		for k < len(other) && other[k].Begin <= cur.End {
			o := other[k]
			if o.Begin > cur.Begin {
				out = append(out, Range{cur.Begin, o.Begin - 1})
			}
			if o.End >= cur.End {
				consumed = true
				break
			}
			cur.Begin = o.End + 1
			k++
		}
		if !consumed {
			out = append(out, cur)
		}
	}
	return normalise(out)
}

// Intersect returns the ports in both sets.
func (rs Ranges) Intersect(other Ranges) Ranges {
	return rs.Minus(rs.Minus(other))
}

// Lowest returns the n lowest ports of the set, or false when it holds fewer.
// Choosing the lowest keeps choices deterministic, which tests and operators
// reading a pod's recorded ports both rely on.
func (rs Ranges) Lowest(n int) ([]uint64, bool) {
	if n <= 0 {
		return nil, true
	}
	if rs.Size() < uint64(n) {
		return nil, false
	}
	out := make([]uint64, 0, n)
	for _, r := range rs {
		for p := r.Begin; p <= r.End && len(out) < n; p++ {
			out = append(out, p)
		}
		if len(out) == n {
			break
		}
	}
	return out, true
}

// String renders the set as Mesos does, e.g. "[31000-31099, 31200-31200]".
func (rs Ranges) String() string {
	var b strings.Builder
	b.WriteByte('[')
	for i, r := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatUint(r.Begin, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatUint(r.End, 10))
	}
	b.WriteByte(']')
	return b.String()
}

// Ports lists every port of the set in order; meant for small sets such as a
// pod's host ports.
func (rs Ranges) Ports() []uint64 {
	var out []uint64
	for _, r := range rs {
		for p := r.Begin; ; p++ {
			out = append(out, p)
			if p == r.End {
				break
			}
		}
	}
	return out
}
