package podresources

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Mesos resource names this package understands.
const (
	CPUs  = "cpus"
	Mem   = "mem"
	Disk  = "disk"
	GPUs  = "gpus"
	Ports = "ports"
)

// Milli is a Mesos scalar in thousandths, the precision Mesos itself keeps
// (mesos: src/common/values.cpp). Integer arithmetic makes Add and Subtract
// exact, so a sequence of reservations and releases returns exactly to the
// starting amount.
type Milli int64

// MilliFromFloat converts a Mesos scalar, rounding half away from zero as
// Mesos does.
func MilliFromFloat(f float64) Milli {
	return Milli(math.Round(f * 1000))
}

// Float is the value in Mesos units.
func (m Milli) Float() float64 { return float64(m) / 1000 }

// String prints the shortest exact decimal: 0.5, 2, 128.125.
func (m Milli) String() string {
	return strconv.FormatFloat(m.Float(), 'f', -1, 64)
}

// Scalars are the scalar Mesos resources a pod can use.
type Scalars struct {
	CPUs   Milli // cores
	MemMB  Milli // Mesos "mem", megabytes (2^20 bytes)
	DiskMB Milli // Mesos "disk", megabytes (2^20 bytes)
	GPUs   Milli // Mesos "gpus"; whole numbers in practice
}

// Add returns s+o.
func (s Scalars) Add(o Scalars) Scalars {
	return Scalars{s.CPUs + o.CPUs, s.MemMB + o.MemMB, s.DiskMB + o.DiskMB, s.GPUs + o.GPUs}
}

// Sub returns s-o; a negative field means o did not fit.
func (s Scalars) Sub(o Scalars) Scalars {
	return Scalars{s.CPUs - o.CPUs, s.MemMB - o.MemMB, s.DiskMB - o.DiskMB, s.GPUs - o.GPUs}
}

// Max returns the per-resource maximum.
func (s Scalars) Max(o Scalars) Scalars {
	return Scalars{max(s.CPUs, o.CPUs), max(s.MemMB, o.MemMB), max(s.DiskMB, o.DiskMB), max(s.GPUs, o.GPUs)}
}

// IsZero reports whether every scalar is zero.
func (s Scalars) IsZero() bool { return s == Scalars{} }

// Negative names the first negative scalar, or "" when there is none.
func (s Scalars) Negative() string {
	for _, f := range s.fields() {
		if f.v < 0 {
			return f.name
		}
	}
	return ""
}

type namedMilli struct {
	name string
	v    Milli
}

func (s Scalars) fields() [4]namedMilli {
	return [4]namedMilli{{CPUs, s.CPUs}, {Mem, s.MemMB}, {Disk, s.DiskMB}, {GPUs, s.GPUs}}
}

// Resources is an amount of Mesos resources on one agent for one role: what
// is offered, what is still available, or what one pod has claimed (then Ports
// holds the concrete host ports).
type Resources struct {
	Scalars
	Ports Ranges
}

// IsZero reports whether r holds nothing.
func (r Resources) IsZero() bool { return r.Scalars.IsZero() && len(r.Ports) == 0 }

// Add returns the sum of r and o.
func (r Resources) Add(o Resources) Resources {
	return Resources{Scalars: r.Scalars.Add(o.Scalars), Ports: r.Ports.Union(o.Ports)}
}

// Subtract returns r without o. It does not check that o fits: callers decide
// first with Contains or Fit, because what to do when it does not fit (fail a
// reservation, mark one lost) is theirs to choose.
func (r Resources) Subtract(o Resources) Resources {
	return Resources{Scalars: r.Scalars.Sub(o.Scalars), Ports: r.Ports.Minus(o.Ports)}
}

// Contains reports whether o fits entirely in r.
func (r Resources) Contains(o Resources) bool {
	d := r.Scalars.Sub(o.Scalars)
	return d.Negative() == "" && r.Ports.ContainsAll(o.Ports)
}

// String renders r the way Mesos logs resources.
func (r Resources) String() string {
	parts := make([]string, 0, 5)
	for _, f := range r.Scalars.fields() {
		if f.v != 0 {
			parts = append(parts, f.name+":"+f.v.String())
		}
	}
	if len(r.Ports) > 0 {
		parts = append(parts, Ports+":"+r.Ports.String())
	}
	return strings.Join(parts, "; ")
}

// Shortfall is one reason a demand does not fit, in the words a person
// debugging a Pending pod needs: which resource, how much there is, how much
// was asked for.
type Shortfall struct {
	Resource  string // cpus, mem, disk, gpus, ports, role
	Offered   string
	Requested string
}

func (s Shortfall) String() string {
	switch s.Resource {
	case "role":
		return fmt.Sprintf("no resources offered for role %s", s.Requested)
	case Ports:
		return fmt.Sprintf("%s %s, %s", s.Offered, Ports, s.Requested)
	}
	return fmt.Sprintf("%s %s offered, %s requested", s.Offered, s.Resource, s.Requested)
}

// Shortfalls lists everything that is short; empty means the demand fits.
type Shortfalls []Shortfall

// Fits is true when nothing is short.
func (s Shortfalls) Fits() bool { return len(s) == 0 }

// Error joins the reasons, e.g. "0.5 cpus offered, 2 requested; 64 mem offered, 128 requested".
func (s Shortfalls) Error() string {
	parts := make([]string, len(s))
	for i := range s {
		parts[i] = s[i].String()
	}
	return strings.Join(parts, "; ")
}

// Fit reports what of d does not fit in r. Fixed host ports must all be free;
// wildcard ports need that many further free ports.
func (r Resources) Fit(d Demand) Shortfalls {
	var out Shortfalls
	have, want := r.Scalars.fields(), d.Scalars.fields()
	for i := range have {
		if want[i].v > have[i].v {
			out = append(out, Shortfall{Resource: have[i].name, Offered: have[i].v.String(), Requested: want[i].v.String()})
		}
	}
	fixed := PortsOf(d.HostPorts...)
	if missing := fixed.Minus(r.Ports); len(missing) > 0 {
		out = append(out, Shortfall{Resource: Ports, Offered: r.Ports.String(), Requested: "host ports " + missing.String() + " not offered"})
	}
	if d.WildcardPorts > 0 {
		free := r.Ports.Minus(fixed).Size()
		if free < uint64(d.WildcardPorts) {
			out = append(out, Shortfall{Resource: Ports, Offered: strconv.FormatUint(free, 10) + " free", Requested: strconv.Itoa(d.WildcardPorts) + " wildcard ports requested"})
		}
	}
	return out
}

// Claim turns a demand into the concrete resources it takes from r: the
// scalars, the fixed host ports and the lowest free ports for its wildcard
// ports (returned in the order of d's wildcard ports). ok is false when d does
// not fit.
func (r Resources) Claim(d Demand) (claim Resources, wildcard []uint64, ok bool) {
	if !r.Fit(d).Fits() {
		return Resources{}, nil, false
	}
	fixed := PortsOf(d.HostPorts...)
	wildcard, ok = r.Ports.Minus(fixed).Lowest(d.WildcardPorts)
	if !ok {
		return Resources{}, nil, false
	}
	return Resources{Scalars: d.Scalars, Ports: fixed.Union(PortsOf(wildcard...))}, wildcard, true
}

// ByRole holds an agent's resources split by the role they are allocated to.
// Mesos offers every resource to one role of a multi-role framework and a task
// must draw all its resources from one role, so pools of different roles never
// add up for one pod.
type ByRole map[string]Resources

// Roles returns the roles in sorted order, so that choosing among roles is
// deterministic.
func (b ByRole) Roles() []string {
	roles := make([]string, 0, len(b))
	for role := range b {
		roles = append(roles, role)
	}
	sort.Strings(roles)
	return roles
}

// Total sums every role's resources; used for a "could this pod ever fit" check.
func (b ByRole) Total() Resources {
	var t Resources
	for _, r := range b {
		t = t.Add(r)
	}
	return t
}

// Clone returns an independent copy (Ranges are immutable and may be shared).
func (b ByRole) Clone() ByRole {
	out := make(ByRole, len(b))
	for k, v := range b {
		out[k] = v
	}
	return out
}

// Fit picks the first role (in sorted order) that d may use and that holds d.
// When none does it returns the shortfalls of the allowed role that comes
// closest, so that the message names what is really missing.
func (b ByRole) Fit(d Demand) (role string, short Shortfalls) {
	var best Shortfalls
	tried := false
	for _, role := range b.Roles() {
		if !d.AllowsRole(role) {
			continue
		}
		s := b[role].Fit(d)
		if s.Fits() {
			return role, nil
		}
		if !tried || len(s) < len(best) {
			best = s
		}
		tried = true
	}
	if !tried {
		want := strings.Join(d.Roles, ",")
		if want == "" {
			want = "any"
		}
		return "", Shortfalls{{Resource: "role", Offered: strings.Join(b.Roles(), ","), Requested: want}}
	}
	return "", best
}
