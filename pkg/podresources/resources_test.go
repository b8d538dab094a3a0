package podresources

import (
	"math/rand"
	"reflect"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

func TestRanges(t *testing.T) {
	rs := NewRanges(Range{31005, 31010}, Range{31000, 31004}, Range{32000, 32000}, Range{31008, 31020})
	if want := (Ranges{{31000, 31020}, {32000, 32000}}); !reflect.DeepEqual(rs, want) {
		t.Fatalf("NewRanges = %v, want %v", rs, want)
	}
	if rs.Size() != 22 {
		t.Errorf("Size = %d, want 22", rs.Size())
	}
	minus := rs.Minus(PortsOf(31000, 31010, 32000))
	if want := (Ranges{{31001, 31009}, {31011, 31020}}); !reflect.DeepEqual(minus, want) {
		t.Errorf("Minus = %v, want %v", minus, want)
	}
	if !rs.ContainsAll(PortsOf(31000, 31020, 32000)) || rs.ContainsAll(PortsOf(31021)) {
		t.Errorf("ContainsAll wrong for %v", rs)
	}
	low, ok := minus.Lowest(3)
	if !ok || !reflect.DeepEqual(low, []uint64{31001, 31002, 31003}) {
		t.Errorf("Lowest(3) = %v %v", low, ok)
	}
	if _, ok := PortsOf(1, 2).Lowest(3); ok {
		t.Errorf("Lowest(3) of two ports succeeded")
	}
}

// Set operations checked against a plain map of ports.
func TestRangesAgainstSets(t *testing.T) {
	rnd := rand.New(rand.NewSource(1))
	randRanges := func() (Ranges, map[uint64]bool) {
		set := map[uint64]bool{}
		var spans []Range
		for i := 0; i < rnd.Intn(5); i++ {
			b := uint64(rnd.Intn(60))
			e := b + uint64(rnd.Intn(8))
			spans = append(spans, Range{b, e})
			for p := b; p <= e; p++ {
				set[p] = true
			}
		}
		return NewRanges(spans...), set
	}
	for i := 0; i < 2000; i++ {
		a, as := randRanges()
		b, bs := randRanges()
		minus, union, inter := a.Minus(b), a.Union(b), a.Intersect(b)
		for p := uint64(0); p < 70; p++ {
			if minus.Contains(p) != (as[p] && !bs[p]) {
				t.Fatalf("%v minus %v: port %d wrong", a, b, p)
			}
			if union.Contains(p) != (as[p] || bs[p]) {
				t.Fatalf("%v union %v: port %d wrong", a, b, p)
			}
			if inter.Contains(p) != (as[p] && bs[p]) {
				t.Fatalf("%v intersect %v: port %d wrong", a, b, p)
			}
		}
	}
}

func TestFitExplains(t *testing.T) {
	avail := Resources{Scalars: Scalars{CPUs: 500, MemMB: 4096000}, Ports: NewRanges(Range{31000, 31001})}
	d := Demand{Scalars: Scalars{CPUs: 2000, MemMB: 128000}}
	short := avail.Fit(d)
	if got, want := short.Error(), "0.5 cpus offered, 2 requested"; got != want {
		t.Errorf("Fit = %q, want %q", got, want)
	}
	d = Demand{HostPorts: []uint64{8080}, WildcardPorts: 3}
	if got, want := avail.Fit(d).Error(), "[31000-31001] ports, host ports [8080-8080] not offered; 2 free ports, 3 wildcard ports requested"; got != want {
		t.Errorf("Fit = %q, want %q", got, want)
	}
	if s := avail.Fit(Demand{Scalars: Scalars{CPUs: 500}, WildcardPorts: 2}); !s.Fits() {
		t.Errorf("exact fit reported short: %v", s)
	}
}

func TestClaimChoosesFreePorts(t *testing.T) {
	avail := Resources{Scalars: Scalars{CPUs: 1000}, Ports: NewRanges(Range{31000, 31003})}
	claim, wild, ok := avail.Claim(Demand{Scalars: Scalars{CPUs: 1000}, HostPorts: []uint64{31000}, WildcardPorts: 2})
	if !ok {
		t.Fatal("claim failed")
	}
	if !reflect.DeepEqual(wild, []uint64{31001, 31002}) {
		t.Errorf("wildcard ports = %v", wild)
	}
	rest := avail.Subtract(claim)
	if rest.CPUs != 0 || !reflect.DeepEqual(rest.Ports, PortsOf(31003)) {
		t.Errorf("rest = %v", rest)
	}
	if !rest.Add(claim).Contains(avail) || !avail.Contains(rest.Add(claim)) {
		t.Errorf("claim + rest != available")
	}
}

func TestByRoleFit(t *testing.T) {
	b := ByRole{
		"*":   {Scalars: Scalars{CPUs: 1000}},
		"web": {Scalars: Scalars{CPUs: 4000}},
	}
	role, short := b.Fit(Demand{Scalars: Scalars{CPUs: 2000}})
	if role != "web" || !short.Fits() {
		t.Errorf("Fit = %q %v, want web", role, short)
	}
	role, short = b.Fit(Demand{Scalars: Scalars{CPUs: 2000}, Roles: []string{"*"}})
	if role != "" || short.Error() != "1 cpus offered, 2 requested" {
		t.Errorf("Fit restricted to * = %q %q", role, short.Error())
	}
	_, short = b.Fit(Demand{Roles: []string{"batch"}})
	if short.Error() != "no resources offered for role batch" {
		t.Errorf("Fit for absent role = %q", short.Error())
	}
}

func str(s string) *string { return &s }

func TestFromMesosAndTake(t *testing.T) {
	reserved := mesos.Resource_ReservationInfo{Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: str("web")}
	offer := mesos.Resources{
		{Name: "cpus", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: 1.5}, AllocationInfo: allocation("web")},
		{Name: "cpus", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: 1}, AllocationInfo: allocation("web"), Reservations: []mesos.Resource_ReservationInfo{reserved}},
		{Name: "mem", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: 1024}, AllocationInfo: allocation("web")},
		{Name: "cpus", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: 8}, AllocationInfo: allocation("web"), Revocable: &mesos.Resource_RevocableInfo{}},
		{Name: "ports", Type: mesos.RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: []mesos.Value_Range{{Begin: 31000, End: 31009}}}, AllocationInfo: allocation("web")},
		{Name: "mem", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: 512}, AllocationInfo: allocation("batch")},
	}
	got := FromMesos(offer)
	want := ByRole{
		"web":   {Scalars: Scalars{CPUs: 2500, MemMB: 1024000}, Ports: NewRanges(Range{31000, 31009})},
		"batch": {Scalars: Scalars{MemMB: 512000}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("FromMesos = %v, want %v (revocable cpus must not count)", got, want)
	}

	claim := Resources{Scalars: Scalars{CPUs: 2000, MemMB: 256000}, Ports: PortsOf(31003)}
	taken, rest, err := Take(offer, "web", claim)
	if err != nil {
		t.Fatal(err)
	}
	if g := FromMesos(taken); !reflect.DeepEqual(g, ByRole{"web": claim}) {
		t.Errorf("taken = %v, want %v", g, claim)
	}
	// A task's resources keep the reservation they were offered with.
	sawReserved := false
	for _, r := range taken {
		if len(r.Reservations) > 0 {
			sawReserved = true
		}
	}
	if !sawReserved {
		t.Errorf("taken resources lost their reservation: %v", taken)
	}
	back := FromMesos(rest)
	if w := want["web"].Subtract(claim); !reflect.DeepEqual(back["web"], w) {
		t.Errorf("rest for web = %v, want %v", back["web"], w)
	}
	if !reflect.DeepEqual(back["batch"], want["batch"]) {
		t.Errorf("rest lost other role's resources: %v", back)
	}

	if _, _, err := Take(offer, "web", Resources{Scalars: Scalars{CPUs: 3000}}); err == nil {
		t.Errorf("taking more cpus than offered succeeded")
	}
}

func TestToMesosRoundTrip(t *testing.T) {
	r := Resources{Scalars: Scalars{CPUs: 125, MemMB: 64000, DiskMB: 10, GPUs: 1000}, Ports: NewRanges(Range{1, 3}, Range{9, 9})}
	if got := FromMesos(ToMesos(r, "web")); !reflect.DeepEqual(got, ByRole{"web": r}) {
		t.Errorf("round trip = %v, want %v", got, r)
	}
}
