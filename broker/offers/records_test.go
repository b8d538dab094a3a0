package offers

import (
	"reflect"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// richOffer has everything an offer's resources may carry that the ACCEPT
// must send back as Mesos sent it: a dynamic reservation with principal and
// labels (refined format), allocation info, and resources k8sm cannot use
// (revocable cpus, a persistent volume) that go back with the remainder.
func richOffer(id, agentID, host string) mesos.Offer {
	web, principal, owner := "web", "ops", "team-a"
	alloc := func() *mesos.Resource_AllocationInfo { return &mesos.Resource_AllocationInfo{Role: &web} }
	reserved := []mesos.Resource_ReservationInfo{{
		Type:      mesos.Resource_ReservationInfo_DYNAMIC.Enum(),
		Role:      &web,
		Principal: &principal,
		Labels:    &mesos.Labels{Labels: []mesos.Label{{Key: "owner", Value: &owner}}},
	}}
	scalar := func(name string, v float64) mesos.Resource {
		return mesos.Resource{Name: name, Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: v}, AllocationInfo: alloc()}
	}
	cpus := scalar("cpus", 2)
	cpus.Reservations = reserved
	mem := scalar("mem", 1024)
	mem.Reservations = reserved
	revocable := scalar("cpus", 4)
	revocable.Revocable = &mesos.Resource_RevocableInfo{}
	volume := scalar("disk", 512)
	volume.Reservations = reserved
	volume.Disk = &mesos.Resource_DiskInfo{
		Persistence: &mesos.Resource_DiskInfo_Persistence{ID: "data-1", Principal: &principal},
		Volume:      &mesos.Volume{ContainerPath: "data", Mode: mesos.RW.Enum()},
	}
	ports := mesos.Resource{Name: "ports", Type: mesos.RANGES.Enum(), AllocationInfo: alloc(),
		Ranges: &mesos.Value_Ranges{Range: []mesos.Value_Range{{Begin: 31000, End: 31009}}}}
	return mesos.Offer{
		ID: mesos.OfferID{Value: id}, AgentID: mesos.AgentID{Value: agentID}, Hostname: host,
		Attributes: []mesos.Attribute{{Name: "rack", Type: mesos.TEXT, Text: &mesos.Value_Text{Value: "r1"}}},
		Resources:  []mesos.Resource{cpus, mem, revocable, volume, ports},
	}
}

// The cache keeps offers as compact records; what Take puts into the ACCEPT
// must still be exactly what Mesos offered: every task resource one of the
// offered ones (with its reservation, labels and allocation info) cut to the
// claim, and the unusable ones untouched in the remainder.
func TestTakeSendsBackTheOfferedResources(t *testing.T) {
	c, _ := newTestCache(Config{})
	o := richOffer("o1", "a1", "node-1")
	offered := richOffer("o1", "a1", "node-1").Resources
	c.Add(o)
	// The caller's event is not the cache's: changing it changes nothing.
	o.Resources[0].Reservations[0].Labels.Labels[0].Key = "changed"

	r, err := c.Reserve(ReserveRequest{Pod: podRef(1), NodeName: "node-1", Demand: podresources.Demand{Scalars: res(1.5, 256).Scalars, HostPorts: []uint64{31003}, Roles: []string{"web"}}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.Take(r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(l.OfferIDs, []string{"o1"}) || len(l.Tasks) != 1 || len(l.Failed) != 0 {
		t.Fatalf("launch %+v, want one task from o1", l)
	}
	task := l.Tasks[0].Resources
	if got, want := podresources.FromMesos(task)["web"], res(1.5, 256, podresources.Range{Begin: 31003, End: 31003}); !reflect.DeepEqual(got, want) {
		t.Errorf("task resources %v, want the claim %v", got, want)
	}
	for _, tr := range task {
		var from *mesos.Resource
		for i := range offered {
			if offered[i].Name == tr.Name && offered[i].Revocable == nil && offered[i].Disk == nil {
				from = &offered[i]
			}
		}
		if from == nil {
			t.Fatalf("task resource %v is none of the offered ones", tr)
		}
		// Only the amount may differ from the offered resource.
		cut := *from
		cut.Scalar, cut.Ranges = tr.Scalar, tr.Ranges
		if !cut.Equal(&tr) {
			t.Errorf("task resource %v\nwas offered as %v: reservation or allocation info changed", tr, *from)
		}
	}
	for _, want := range []mesos.Resource{offered[2], offered[3]} {
		found := false
		for i := range l.Remainder {
			found = found || want.Equal(&l.Remainder[i])
		}
		if !found {
			t.Errorf("remainder %v lacks the unusable %v exactly as offered", l.Remainder, want)
		}
	}
	all := podresources.FromMesos(append(append(mesos.Resources(nil), task...), l.Remainder...))
	if want := podresources.FromMesos(offered); !reflect.DeepEqual(all, want) {
		t.Errorf("task plus remainder %v, want everything offered %v", all, want)
	}
	checkInvariants(t, c)
}

// Declining works from the records alone: the ids of the offers held too
// long, and an offer with nothing usable at once.
func TestDeclineFromRecords(t *testing.T) {
	c, clk := newTestCache(Config{DeclineAfter: 5 * time.Second})
	o := richOffer("rich", "a1", "node-1")
	useless := mesos.Offer{ID: mesos.OfferID{Value: "useless"}, AgentID: o.AgentID, Hostname: o.Hostname,
		Resources: []mesos.Resource{o.Resources[2], o.Resources[3]}}
	c.Add(o, useless)
	if d := c.Declinable(); !reflect.DeepEqual(d.OfferIDs, []string{"useless"}) {
		t.Errorf("declined %v at once, want the offer of revocable cpus and a volume only", d.OfferIDs)
	}
	clk.Step(5 * time.Second)
	if d := c.Declinable(); !reflect.DeepEqual(d.OfferIDs, []string{"rich"}) {
		t.Errorf("declined %v after 5s, want the idle offer", d.OfferIDs)
	}
	if v, _ := c.Agent("a1"); len(v.Available) != 0 {
		t.Errorf("available %v after declining every offer", v.Available)
	}
	checkInvariants(t, c)
}

// Agents with the same attributes share one rendered map, which goes when
// the last of them does; an agent whose attributes change gets its own.
func TestAttributeSetsAreShared(t *testing.T) {
	c, _ := newTestCache(Config{})
	c.Add(richOffer("o1", "a1", "node-1"), richOffer("o2", "a2", "node-2"))
	v1, _ := c.Agent("a1")
	v2, _ := c.Agent("a2")
	if !reflect.DeepEqual(v1.Attributes, map[string]string{"rack": "r1"}) {
		t.Fatalf("attributes %v", v1.Attributes)
	}
	if reflect.ValueOf(v1.Attributes).UnsafePointer() != reflect.ValueOf(v2.Attributes).UnsafePointer() || len(c.attrs) != 1 {
		t.Errorf("two agents of rack r1 hold %d attribute sets, want one shared", len(c.attrs))
	}
	moved := richOffer("o3", "a2", "node-2")
	moved.Attributes[0].Text.Value = "r2"
	c.Add(moved)
	if v2, _ = c.Agent("a2"); v2.Attributes["rack"] != "r2" || len(c.attrs) != 2 {
		t.Errorf("a2 moved to r2: attributes %v, %d sets", v2.Attributes, len(c.attrs))
	}
	if v1, _ = c.Agent("a1"); v1.Attributes["rack"] != "r1" {
		t.Errorf("a1's attributes changed with a2's: %v", v1.Attributes)
	}
	c.RemoveAgent("a1")
	c.RemoveAgent("a2")
	if len(c.attrs) != 0 {
		t.Errorf("%d attribute sets left after every agent went", len(c.attrs))
	}
}
