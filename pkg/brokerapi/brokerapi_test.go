package brokerapi

import (
	"reflect"
	"strings"
	"testing"

	"github.com/k8sm/k8sm/pkg/podresources"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// The plugin checks health under ServiceName; the server registers the
// generated service descriptor. Both must name the same service.
func TestServiceNameIsTheGeneratedOne(t *testing.T) {
	if ServiceName != brokerv1.Broker_ServiceDesc.ServiceName {
		t.Errorf("ServiceName %q, generated %q", ServiceName, brokerv1.Broker_ServiceDesc.ServiceName)
	}
}

func TestDemandRoundTrip(t *testing.T) {
	d := podresources.Demand{
		Scalars:   podresources.Scalars{CPUs: 1500, MemMB: 256000, DiskMB: 1000, GPUs: 1000},
		HostPorts: []uint64{80, 443}, WildcardPorts: 2, Roles: []string{"web"},
	}
	got, err := DemandFromProto(DemandToProto(d))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Errorf("round trip gave %+v, want %+v", got, d)
	}
}

func TestDemandFromProtoRefusesBadAmounts(t *testing.T) {
	for _, c := range []struct {
		d    *brokerv1.Demand
		want string
	}{
		{&brokerv1.Demand{Cpus: 1e16}, "cpus = 1e+16 is not a usable amount"},
		{&brokerv1.Demand{MemMb: -1}, "negative mem"},
		{&brokerv1.Demand{WildcardPorts: -1}, "negative number of wildcard ports"},
	} {
		if _, err := DemandFromProto(c.d); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want it to contain %q", c.d, err, c.want)
		}
	}
}

func TestByRoleRoundTrip(t *testing.T) {
	b := podresources.ByRole{
		"*":   {Scalars: podresources.Scalars{CPUs: 2000, MemMB: 1024000}, Ports: podresources.NewRanges(podresources.Range{Begin: 31000, End: 32000})},
		"web": {Scalars: podresources.Scalars{CPUs: 500}},
	}
	pb := ByRoleToProto(b)
	if len(pb) != 2 || pb[0].GetRole() != "*" || pb[1].GetRole() != "web" {
		t.Fatalf("roles out of order: %v", pb)
	}
	if got := ByRoleFromProto(pb); !reflect.DeepEqual(got, b) {
		t.Errorf("round trip gave %v, want %v", got, b)
	}
}
