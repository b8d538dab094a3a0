package podresources

// Holds reports whether d fits in r, as Fit(d).Fits() does, without
// wording the shortfalls: the scheduler asks this for every agent and pod,
// and only the agents that fail need their reasons.
func (r Resources) Holds(d Demand) bool {
	if d.CPUs > r.CPUs || d.MemMB > r.MemMB || d.DiskMB > r.DiskMB || d.GPUs > r.GPUs {
		return false
	}
	if len(d.HostPorts) == 0 && d.WildcardPorts <= 0 {
		return true
	}
	fixed := PortsOf(d.HostPorts...)
	if len(fixed.Minus(r.Ports)) > 0 {
		return false
	}
	return d.WildcardPorts <= 0 || r.Ports.Minus(fixed).Size() >= uint64(d.WildcardPorts)
}

// Holds returns the role Fit would pick for d, and whether there is one,
// without sorting the roles of an agent that has only one (the common case)
// or wording the shortfalls.
func (b ByRole) Holds(d Demand) (string, bool) {
	if len(b) == 1 {
		for role, r := range b {
			if d.AllowsRole(role) && r.Holds(d) {
				return role, true
			}
		}
		return "", false
	}
	for _, role := range b.Roles() {
		if d.AllowsRole(role) && b[role].Holds(d) {
			return role, true
		}
	}
	return "", false
}
