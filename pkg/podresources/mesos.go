package podresources

import (
	"fmt"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// DefaultRole is Mesos's name for unreserved resources of a framework that
// has no role.
const DefaultRole = "*"

// usable reports whether a pod may be launched on r. Revocable resources can
// be taken away under a running pod; persistent volumes, MOUNT/PATH/BLOCK
// disks, shared resources and resources of resource providers need operations
// k8sm does not perform. Skipping them is always safe: they simply go back to
// Mesos with the rest of the offer.
func usable(r *mesos.Resource) bool {
	if r.IsRevocable() || r.IsPersistentVolume() || r.GetShared() != nil || r.HasResourceProvider() {
		return false
	}
	if r.GetDisk().GetSource() != nil {
		return false
	}
	switch r.Name {
	case CPUs, Mem, Disk, GPUs:
		return r.GetType() == mesos.SCALAR && r.Scalar != nil
	case Ports:
		return r.GetType() == mesos.RANGES && r.Ranges != nil
	}
	return false
}

// RoleOf is the role a resource is allocated to: its allocation_info role
// (multi-role frameworks), else its reservation role, else "*".
func RoleOf(r *mesos.Resource) string {
	if ai := r.GetAllocationInfo(); ai != nil && ai.Role != nil {
		return ai.GetRole()
	}
	if !r.IsUnreserved() {
		return r.ReservationRole()
	}
	return DefaultRole
}

// FromMesos sums the resources a pod can use, by allocation role.
func FromMesos(rs []mesos.Resource) ByRole {
	out := ByRole{}
	for i := range rs {
		r := &rs[i]
		if !usable(r) {
			continue
		}
		role := RoleOf(r)
		acc := out[role]
		switch r.Name {
		case CPUs:
			acc.CPUs += MilliFromFloat(r.Scalar.Value)
		case Mem:
			acc.MemMB += MilliFromFloat(r.Scalar.Value)
		case Disk:
			acc.DiskMB += MilliFromFloat(r.Scalar.Value)
		case GPUs:
			acc.GPUs += MilliFromFloat(r.Scalar.Value)
		case Ports:
			acc.Ports = acc.Ports.Union(rangesFromMesos(r.Ranges.Range))
		}
		out[role] = acc
	}
	return out
}

func rangesFromMesos(rs []mesos.Value_Range) Ranges {
	spans := make([]Range, len(rs))
	for i, r := range rs {
		spans[i] = Range{r.Begin, r.End}
	}
	return NewRanges(spans...)
}

func rangesToMesos(rs Ranges) []mesos.Value_Range {
	out := make([]mesos.Value_Range, len(rs))
	for i, r := range rs {
		out[i] = mesos.Value_Range{Begin: r.Begin, End: r.End}
	}
	return out
}

// ToMesos renders r as unreserved resources allocated to role, the form of an
// ExecutorInfo's resources or of resources in a test offer.
func ToMesos(r Resources, role string) mesos.Resources {
	var out mesos.Resources
	scalar := func(name string, v Milli) {
		if v == 0 {
			return
		}
		out = append(out, mesos.Resource{
			Name:           name,
			Type:           mesos.SCALAR.Enum(),
			Scalar:         &mesos.Value_Scalar{Value: v.Float()},
			AllocationInfo: allocation(role),
		})
	}
	scalar(CPUs, r.CPUs)
	scalar(Mem, r.MemMB)
	scalar(Disk, r.DiskMB)
	scalar(GPUs, r.GPUs)
	if len(r.Ports) > 0 {
		out = append(out, mesos.Resource{
			Name:           Ports,
			Type:           mesos.RANGES.Enum(),
			Ranges:         &mesos.Value_Ranges{Range: rangesToMesos(r.Ports)},
			AllocationInfo: allocation(role),
		})
	}
	return out
}

func allocation(role string) *mesos.Resource_AllocationInfo {
	if role == "" {
		return nil
	}
	return &mesos.Resource_AllocationInfo{Role: &role}
}

// Take cuts want out of the offered resources of one role, keeping each
// piece's reservation and allocation info as Mesos requires for a LAUNCH.
// Resources of other roles and unusable resources are left in rest. A want
// that the offer does not hold is an error and nothing is taken.
func Take(offered []mesos.Resource, role string, want Resources) (taken, rest mesos.Resources, err error) {
	return take(offered, role, want, func(*mesos.Resource) bool { return true })
}

// TakeUnreserved cuts want out of the unreserved resources allocated to role
// and returns it as ToMesos(want, role) does. The executor's resources must
// have one shape whatever the offers looked like: Mesos refuses a task whose
// ExecutorInfo differs from the running executor's, and the broker that
// launches the next task may not be the one that started the executor.
func TakeUnreserved(offered []mesos.Resource, role string, want Resources) (taken, rest mesos.Resources, err error) {
	_, rest, err = take(offered, role, want, func(r *mesos.Resource) bool {
		return r.IsUnreserved() && r.Disk == nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("unreserved resources: %w", err)
	}
	return ToMesos(want, role), rest, nil
}

func take(offered []mesos.Resource, role string, want Resources, from func(*mesos.Resource) bool) (taken, rest mesos.Resources, err error) {
	left := want.Scalars
	ports := want.Ports
	for i := range offered {
		r := offered[i]
		if !usable(&r) || RoleOf(&r) != role || !from(&r) {
			rest = append(rest, r)
			continue
		}
		if r.Name == Ports {
			have := rangesFromMesos(r.Ranges.Range)
			got := have.Intersect(ports)
			if len(got) > 0 {
				taken = append(taken, withRanges(r, got))
				ports = ports.Minus(got)
			}
			if remain := have.Minus(got); len(remain) > 0 {
				rest = append(rest, withRanges(r, remain))
			}
			continue
		}
		need := scalarField(&left, r.Name)
		have := MilliFromFloat(r.Scalar.Value)
		use := min(have, *need)
		if use > 0 {
			taken = append(taken, withScalar(r, use))
			*need -= use
		}
		if have-use > 0 {
			rest = append(rest, withScalar(r, have-use))
		}
	}
	if left.Negative() != "" || !left.IsZero() || len(ports) > 0 {
		missing := Resources{Scalars: left, Ports: ports}
		return nil, nil, fmt.Errorf("offer for role %s lacks %s of %s", role, missing, want)
	}
	return taken, rest, nil
}

func scalarField(s *Scalars, name string) *Milli {
	switch name {
	case CPUs:
		return &s.CPUs
	case Mem:
		return &s.MemMB
	case Disk:
		return &s.DiskMB
	default:
		return &s.GPUs
	}
}

// withScalar copies r with another amount; the copy shares no pointer that
// either side might later change.
func withScalar(r mesos.Resource, v Milli) mesos.Resource {
	r.Scalar = &mesos.Value_Scalar{Value: v.Float()}
	return r
}

func withRanges(r mesos.Resource, rs Ranges) mesos.Resource {
	r.Ranges = &mesos.Value_Ranges{Range: rangesToMesos(rs)}
	return r
}
