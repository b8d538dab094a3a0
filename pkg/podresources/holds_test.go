package podresources

import (
	"math/rand"
	"testing"
)

// Holds must answer exactly as Fit: the plugin's index and Filter use it,
// Reserve and the broker use Fit.
func TestHoldsAgreesWithFit(t *testing.T) {
	rnd := rand.New(rand.NewSource(2))
	milli := func() Milli { return Milli(rnd.Intn(4) * 500) }
	resources := func() Resources {
		var spans []Range
		for range rnd.Intn(3) {
			b := uint64(31000 + rnd.Intn(20))
			spans = append(spans, Range{b, b + uint64(rnd.Intn(4))})
		}
		return Resources{Scalars: Scalars{milli(), milli(), milli(), Milli(rnd.Intn(2) * 1000)}, Ports: NewRanges(spans...)}
	}
	roles := []string{"*", "a", "b"}
	fits := 0
	for i := range 20000 {
		b := ByRole{}
		for range 1 + rnd.Intn(3) {
			b[roles[rnd.Intn(len(roles))]] = resources()
		}
		small := func() Milli { return Milli(rnd.Intn(2) * 500) }
		d := Demand{Scalars: Scalars{small(), small(), small(), Milli(rnd.Intn(4) / 3 * 1000)}}
		for range rnd.Intn(3) {
			d.HostPorts = append(d.HostPorts, uint64(31000+rnd.Intn(24)))
		}
		d.HostPorts = PortsOf(d.HostPorts...).Ports()
		d.WildcardPorts = rnd.Intn(3)
		if rnd.Intn(3) == 0 {
			d.Roles = []string{roles[rnd.Intn(len(roles))]}
		}
		wantRole, short := b.Fit(d)
		role, ok := b.Holds(d)
		if ok {
			fits++
		}
		if ok != short.Fits() || role != wantRole {
			t.Fatalf("case %d: %v holds %v: Holds says %q %v, Fit says %q %v", i, b, d, role, ok, wantRole, short)
		}
		for role, r := range b {
			if r.Holds(d) != r.Fit(d).Fits() {
				t.Fatalf("case %d: role %s %v holds %v: Holds %v, Fit %v", i, role, r, d, r.Holds(d), r.Fit(d))
			}
		}
	}
	if fits < 2000 || fits > 18000 {
		t.Errorf("%d of 20000 cases fit: the cases do not try both answers enough", fits)
	}
}
