package mesossim_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/containment"
)

// linuxLauncher is the containerizer of a real agent on these hosts, with
// a cgroups root of the test's own (tests of other processes run beside).
func linuxLauncher(t *testing.T) containment.Config {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the linux launcher needs root")
	}
	if _, err := os.Stat("/sys/fs/cgroup/freezer/freezer.state"); err != nil {
		if _, err := os.Stat("/sys/fs/cgroup/freezer"); err != nil {
			t.Skip("no cgroup v1 freezer hierarchy here")
		}
	}
	root := fmt.Sprintf("mesos-sim-test-%d/%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	t.Cleanup(func() {
		for _, h := range []string{"freezer", "cpu", "cpuacct", "memory", "pids"} {
			_ = os.Remove(filepath.Join("/sys/fs/cgroup", h, root))
			_ = os.Remove(filepath.Dir(filepath.Join("/sys/fs/cgroup", h, root)))
		}
	})
	return containment.Config{Launcher: containment.LauncherLinux, Isolation: "cgroups/cpu,cgroups/mem,cgroups/pids", CgroupsRoot: root}
}

// TestExecutorExitDestroysItsContainer: as with the Mesos containerizer's
// linux launcher, whatever an executor started dies with it, even a process
// that left its process group (a container runtime's shim does), and the
// agent reports the executor's tasks ended only after that.
func TestExecutorExitDestroysItsContainer(t *testing.T) {
	cfg := realAgent(t, "cpus:2;mem:1024")
	cfg.Containerizer = linuxLauncher(t)
	s := startSim(t, mesossim.Config{Agents: []agent.Config{cfg}})
	ctx := testCtx(t)
	checkpoint := true
	info := fwInfo("contained")
	info.Checkpoint = &checkpoint
	sched := subscribe(t, ctx, s.MasterURL(), "application/x-protobuf", info)

	dir := t.TempDir()
	escaped, execPID := filepath.Join(dir, "escaped.pid"), filepath.Join(dir, "executor.pid")
	// The executor starts a process in a session of its own, then becomes
	// the test executor.
	cmd := fmt.Sprintf(`setsid sh -c 'echo $$ > %s; exec sleep 600' </dev/null >/dev/null 2>&1 & echo $$ > %s; exec %s`, escaped, execPID, testExecutorBin)
	exec := mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "e1"}, Command: &mesos.CommandInfo{Value: &cmd}}
	o := nextOffer(t, ctx, sched)
	if err := sched.MustAccept(ctx, launchCall(o, executorTask("t1", exec, resources(t, "cpus:0.5;mem:64")))); err != nil {
		t.Fatal(err)
	}
	running, err := sched.Update(ctx, "t1", mesos.TASK_RUNNING)
	if err != nil {
		t.Fatal(err)
	}
	if err := sched.Ack(ctx, running); err != nil {
		t.Fatal(err)
	}
	var child, executor int
	eventually(t, ctx, "the executor's pid files", func() bool {
		child, executor = readPID(escaped), readPID(execPID)
		return child > 0 && executor > 0
	})
	if !pidRunning(child) {
		t.Fatalf("the executor's child %d is not running", child)
	}

	if err := syscall.Kill(executor, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	failed, err := sched.Update(ctx, "t1", mesos.TASK_FAILED)
	if err != nil {
		t.Fatal(err)
	}
	if pidRunning(child) {
		t.Errorf("the killed executor's child %d still runs when the agent reports its task %s (%s)", child, failed.GetState(), failed.GetMessage())
	}
	for _, h := range []string{"freezer", "cpu", "memory", "pids"} {
		if m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", h, cfg.Containerizer.CgroupsRoot, "*")); len(m) > 0 {
			for _, d := range m {
				if fi, err := os.Stat(d); err == nil && fi.IsDir() {
					t.Errorf("the destroyed container's cgroup remains: %s", d)
				}
			}
		}
	}
}

func TestContainerizerConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  containment.Config
		want string
	}{
		{containment.Config{Launcher: "docker"}, `--launcher="docker": want posix or linux`},
		{containment.Config{Isolation: "cgroups/mem"}, "needs --launcher=linux"},
		{containment.Config{Launcher: "linux", Isolation: "cgroups/net_cls"}, `unknown or unmodelled isolator "cgroups/net_cls"`},
		{containment.Config{Launcher: "linux", CgroupsRoot: "a/../b"}, "must not contain .."},
	} {
		_, err := containment.New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error saying %q", tc.cfg, err, tc.want)
		}
	}
	if c, err := containment.New(containment.Config{}); err != nil || c.Enabled() {
		t.Errorf("the default (posix) containerizer: %v, enabled %v", err, c.Enabled())
	}
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// pidRunning: pid runs (a zombie has ended).
func pidRunning(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
