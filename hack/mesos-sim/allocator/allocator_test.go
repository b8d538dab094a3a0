package allocator

import (
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/resources"
)

func res(cpus, mem float64, role string) mesos.Resources {
	c := resources.NewCPUs(cpus).Resource
	m := resources.NewMemory(mem).Resource
	if role != "" {
		c.Role, m.Role = &role, &role
	}
	return mesos.Resources{c, m}
}

func TestCycle(t *testing.T) {
	a := New()
	now := time.Now()
	a.AddAgent("a1", res(4, 1024, ""), nil)
	a.AddAgent("a2", res(4, 1024, "").Plus(res(2, 256, "web")...), nil)
	a.AddFramework("f1", []string{"*"}, nil)
	a.AddFramework("f2", []string{"web"}, nil)
	got := a.Cycle(now)
	if len(got) != 2 { // whole agents: f1 gets a1, f2 (web) gets all of a2, reserved and unreserved
		t.Fatalf("allocations %+v", got)
	}
	// Everything is allocated now: the next cycle offers nothing.
	if again := a.Cycle(now); len(again) != 0 {
		t.Fatalf("second cycle %+v", again)
	}
	for _, al := range got {
		for _, r := range al.Resources {
			if r.GetRole() == "web" && al.Role != "web" {
				t.Errorf("reserved resource offered to role %s", al.Role)
			}
		}
	}
	// Declined with a filter: not re-offered until it expires or a revive.
	for _, al := range got {
		a.Recover(al.FrameworkID, al.AgentID, al.Resources, time.Minute, now)
	}
	if again := a.Cycle(now.Add(time.Second)); len(again) != 0 {
		// the other framework may take what one declined; only filtered
		// (framework, agent) pairs must be absent
		for _, al := range again {
			for _, prev := range got {
				if prev.FrameworkID == al.FrameworkID && prev.AgentID == al.AgentID {
					t.Errorf("filtered resources re-offered: %+v", al)
				}
			}
		}
	}
	a.Revive("f1", nil)
	a.Revive("f2", nil)
	for _, al := range a.Cycle(now.Add(2 * time.Second)) {
		a.Recover(al.FrameworkID, al.AgentID, al.Resources, 0, now)
	}
	a.Suppress("f1", nil)
	for _, al := range a.Cycle(now.Add(3 * time.Second)) {
		if al.FrameworkID == "f1" {
			t.Errorf("suppressed framework offered %+v", al)
		}
	}
}
