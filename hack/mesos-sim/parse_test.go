package mesossim

import (
	"testing"
	"time"

	"github.com/k8sm/k8sm/hack/mesos-sim/master"
)

func TestParseResources(t *testing.T) {
	rs, err := ParseResources("cpus:4;mem:8192;ports:[31000-32000,33000-33001];cpus(web):2;gpus:1;disks:{a,b}")
	if err != nil {
		t.Fatal(err)
	}
	var cpus, webCPUs float64
	for _, r := range rs {
		switch {
		case r.Name == "cpus" && r.GetRole() == "web":
			webCPUs += r.GetScalar().GetValue()
		case r.Name == "cpus":
			cpus += r.GetScalar().GetValue()
		case r.Name == "ports":
			if len(r.Ranges.Range) != 2 {
				t.Errorf("ports %v", r.Ranges)
			}
		case r.Name == "disks":
			if len(r.Set.Item) != 2 {
				t.Errorf("set %v", r.Set)
			}
		}
	}
	if cpus != 4 || webCPUs != 2 {
		t.Errorf("cpus %v web %v", cpus, webCPUs)
	}
	for _, bad := range []string{"cpus", "cpus:x", "ports:[5-1]", "ports:[1]"} {
		if _, err := ParseResources(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	attrs, err := ParseAttributes("rack:r1;level:3;span:[1-2]")
	if err != nil || len(attrs) != 3 || attrs[0].Text.Value != "r1" || attrs[1].Scalar.Value != 3 || attrs[2].Ranges == nil {
		t.Fatalf("attributes %v %v", attrs, err)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		5 * time.Second:         "5secs",
		15 * time.Minute:        "15mins",
		1500 * time.Millisecond: "1500ms",
		100 * time.Millisecond:  "100ms",
		90 * time.Second:        "90secs",
		2 * time.Hour:           "2hrs",
		0:                       "0ns",
		3 * 24 * time.Hour:      "3days",
		14 * 24 * time.Hour:     "2weeks",
	} {
		if got := master.FormatDuration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}
