package containment

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDestroyKillsNestedCgroups: a process the executor's container holds
// in a cgroup below its own (as a kubelet's pod under the executor's) dies
// with the container, and every cgroup of it goes.
func TestDestroyKillsNestedCgroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root := fmt.Sprintf("containment-test-%d", os.Getpid())
	c, err := New(Config{Launcher: LauncherLinux, Isolation: "cgroups/mem,cgroups/pids", CgroupsRoot: root})
	if err != nil {
		t.Skipf("no cgroup v1 hierarchies for the linux launcher here: %v", err)
	}
	t.Cleanup(func() {
		for _, h := range c.hierarchies {
			_ = os.Remove(filepath.Join(h, root))
		}
	})
	executor := exec.Command("sleep", "600")
	if err := c.Start("c1", executor.Start); err != nil {
		t.Fatal(err)
	}
	go func() { _ = executor.Wait() }()
	// A "pod" started outside, then put in a cgroup below the container.
	pod := exec.Command("sleep", "600")
	if err := pod.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = pod.Wait() }()
	for _, s := range []string{"freezer", "memory"} {
		nested := filepath.Join(c.hierarchies[s], c.Cgroup("c1"), "kubelet", "pod1")
		if err := os.MkdirAll(nested, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(nested, "cgroup.procs"), []byte(strconv.Itoa(pod.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.Processes("c1"); len(got) != 2 {
		t.Fatalf("the container holds %v, want the executor %d and the pod %d", got, executor.Process.Pid, pod.Process.Pid)
	}
	if err := c.Destroy("c1"); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{executor.Process.Pid, pod.Process.Pid} {
		deadline := time.Now().Add(5 * time.Second)
		for running(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if running(pid) {
			t.Errorf("process %d survived the container's destruction", pid)
		}
	}
	for s, h := range c.hierarchies {
		if _, err := os.Stat(filepath.Join(h, c.Cgroup("c1"))); !os.IsNotExist(err) {
			t.Errorf("the container's cgroup remains in the %s hierarchy (%v)", s, err)
		}
	}
	if err := c.Destroy("c1"); err != nil {
		t.Errorf("destroying a destroyed container: %v", err)
	}
}

// running: pid runs and is not a zombie.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
