package framework

import (
	"slices"
	"testing"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// TestPodTasks: a pod's live tasks are those recorded running and not yet
// ended, whatever other pods' tasks come and go; a task seen again (its
// agent told once more) counts once.
func TestPodTasks(t *testing.T) {
	d := NewDriver(nil, nil)
	a1, a2 := taskinfo.TaskID("uid-a", "r1"), taskinfo.TaskID("uid-a", "r2")
	b1 := taskinfo.TaskID("uid-b", "r1")
	d.taskAt(a1, "agent-1")
	d.taskAt(b1, "agent-1")
	d.taskAt(a2, "agent-2")
	d.taskAt(a1, "agent-3") // seen again, elsewhere
	got := d.PodTasks("uid-a")
	slices.Sort(got)
	if want := []string{a1, a2}; !slices.Equal(got, want) {
		t.Errorf("tasks of a: %v, want %v", got, want)
	}
	if got := d.taskAgent(a1); got != "agent-3" {
		t.Errorf("a1 on %q, want agent-3, where it was last seen", got)
	}
	d.taskEnded(a1)
	d.taskEnded(a1) // an end told twice
	if got := d.PodTasks("uid-a"); !slices.Equal(got, []string{a2}) {
		t.Errorf("tasks of a after a1 ended: %v, want [%s]", got, a2)
	}
	d.taskEnded(a2)
	if got := d.PodTasks("uid-a"); len(got) != 0 {
		t.Errorf("tasks of a after both ended: %v, want none", got)
	}
	if got := d.PodTasks("uid-b"); !slices.Equal(got, []string{b1}) {
		t.Errorf("tasks of b: %v, want [%s]", got, b1)
	}
	// The caller may keep and change what it got.
	got = d.PodTasks("uid-b")
	got[0] = "changed"
	if d.PodTasks("uid-b")[0] != b1 {
		t.Error("PodTasks handed out the driver's own slice")
	}
}
