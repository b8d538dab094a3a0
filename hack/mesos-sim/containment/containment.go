// Package containment plays the Linux side of the Mesos containerizer for
// mesos-sim's agents: the Linux launcher (`--launcher=linux`), which starts
// each executor inside a freezer cgroup of its own, and the cgroups
// isolators (`--isolation=cgroups/cpu,cgroups/mem,cgroups/pids`), which give
// that container a cgroup in their hierarchies too, all at
// <cgroups_root>/<container-id>. Whatever the executor starts, directly or
// through a container runtime that creates cgroups below its own, stays in
// that subtree; destroying the container (when the executor exits, after
// its shutdown grace period, or when the agent finds it dead) freezes the
// subtree, SIGKILLs every process in it, thaws it and removes the cgroups,
// as cgroups::destroy does for the launcher and the isolators' cleanup.
// The agent reports the executor's tasks ended only after that.
//
// cgroup v1 only (the hierarchies of these hosts); Mesos' cgroups2 support
// is not modelled.
package containment

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/moby/sys/mountinfo"
)

// Launchers, named as mesos-agent's --launcher.
const (
	LauncherPosix = "posix"
	LauncherLinux = "linux"
)

// DefaultCgroupsRoot is mesos-agent's --cgroups_root default.
const DefaultCgroupsRoot = "mesos"

// isolators maps the --isolation entries of Mesos' cgroups isolators this
// package models to the subsystems whose hierarchies they use.
var isolators = map[string][]string{
	"cgroups/cpu":  {"cpu", "cpuacct"},
	"cgroups/mem":  {"memory"},
	"cgroups/pids": {"pids"},
}

// posixIsolators are accepted and add nothing (resource accounting only).
var posixIsolators = map[string]bool{"posix/cpu": true, "posix/mem": true, "posix/disk": true, "filesystem/posix": true}

// Config is the agent's containerizer: Launcher, Isolation and CgroupsRoot
// as mesos-agent's --launcher, --isolation and --cgroups_root.
type Config struct {
	Launcher    string
	Isolation   string
	CgroupsRoot string
}

// Containerizer creates and destroys executor containers' cgroups. The zero
// value (posix launcher) does nothing: the agent then kills an executor's
// process group only, as Mesos' posix launcher does.
type Containerizer struct {
	root        string
	subsystems  []string // freezer first
	hierarchies map[string]string
}

// New checks cfg against this host and returns its containerizer.
func New(cfg Config) (*Containerizer, error) {
	switch cfg.Launcher {
	case "", LauncherPosix:
		for _, iso := range splitList(cfg.Isolation) {
			if isolators[iso] != nil {
				return nil, fmt.Errorf("--isolation=%s needs --launcher=linux (the cgroups isolators contain the executor's container)", iso)
			}
		}
		return &Containerizer{}, nil
	case LauncherLinux:
	default:
		return nil, fmt.Errorf("--launcher=%q: want posix or linux", cfg.Launcher)
	}
	c := &Containerizer{root: strings.Trim(cfg.CgroupsRoot, "/"), subsystems: []string{"freezer"}}
	if c.root == "" {
		c.root = DefaultCgroupsRoot
	}
	if strings.Contains(c.root, "..") {
		return nil, fmt.Errorf("--cgroups_root=%q must not contain ..", cfg.CgroupsRoot)
	}
	for _, iso := range splitList(cfg.Isolation) {
		subs, ok := isolators[iso]
		if !ok && !posixIsolators[iso] {
			return nil, fmt.Errorf("--isolation: unknown or unmodelled isolator %q (known: cgroups/cpu, cgroups/mem, cgroups/pids, posix/cpu, posix/mem)", iso)
		}
		c.subsystems = append(c.subsystems, subs...)
	}
	h, err := v1Hierarchies()
	if err != nil {
		return nil, err
	}
	c.hierarchies = map[string]string{}
	for _, s := range c.subsystems {
		m, ok := h[s]
		if !ok {
			return nil, fmt.Errorf("--launcher=linux: no cgroup v1 hierarchy with the %s subsystem is mounted (cgroup v2 hosts are not modelled)", s)
		}
		c.hierarchies[s] = m
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Enabled says whether executors get containers of their own.
func (c *Containerizer) Enabled() bool { return c != nil && c.root != "" }

// Cgroup is the container's cgroup, relative to each hierarchy's root.
func (c *Containerizer) Cgroup(containerID string) string {
	return "/" + c.root + "/" + containerID
}

// Start runs start (which forks the executor) with the calling thread
// inside the container's cgroups, so that the executor is born in its
// container and nothing it starts can escape it, as the Linux launcher's
// child is isolated before it execs; the thread goes back where it was
// right after the fork. Call it on the goroutine that forks (inside
// netns.Do's function when the agent has a network namespace).
func (c *Containerizer) Start(containerID string, start func() error) error {
	if !c.Enabled() {
		return start()
	}
	cg := c.Cgroup(containerID)
	for _, s := range c.subsystems {
		if err := os.MkdirAll(filepath.Join(c.hierarchies[s], cg), 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s in the %s hierarchy: %w", cg, s, err)
		}
	}
	runtime.LockOSThread()
	tid := strconv.Itoa(syscall.Gettid())
	home, err := threadCgroups(tid)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	moved, err := c.moveThread(tid, func(string) string { return cg })
	if err == nil {
		err = start()
	}
	// v1: writing a thread id to "tasks" moves that thread only.
	if _, backErr := c.moveThread(tid, func(s string) string { return home[s] }); backErr != nil && moved > 0 {
		// Never hand a thread that sits in a container back to the Go
		// runtime: the goroutine ends locked, so its thread is discarded.
		return fmt.Errorf("leaving the cgroups of container %s: %w", containerID, backErr)
	}
	runtime.UnlockOSThread()
	if err != nil {
		_ = c.Destroy(containerID)
	}
	return err
}

// moveThread writes tid into the cgroup where(subsystem) of each of the
// container's hierarchies, and says how many it moved.
func (c *Containerizer) moveThread(tid string, where func(subsystem string) string) (int, error) {
	for i, s := range c.subsystems {
		dir := filepath.Join(c.hierarchies[s], where(s))
		if err := os.WriteFile(filepath.Join(dir, "tasks"), []byte(tid), 0o644); err != nil {
			return i, fmt.Errorf("moving thread %s to cgroup %s: %w", tid, dir, err)
		}
	}
	return len(c.subsystems), nil
}

// threadCgroups is the cgroup of thread tid in each v1 subsystem's hierarchy.
func threadCgroups(tid string) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%s/cgroup", tid))
	if err != nil {
		return nil, fmt.Errorf("reading the agent thread's cgroups: %w", err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || parts[1] == "" {
			continue
		}
		for _, sub := range strings.Split(parts[1], ",") {
			out[sub] = parts[2]
		}
	}
	return out, nil
}

// DestroyTimeout bounds a destroy, as --cgroups_destroy_timeout (1 min).
var DestroyTimeout = time.Minute

// Destroy kills every process of the container and removes its cgroups
// (and every cgroup below them, such as a kubelet's pods'): freeze the
// freezer subtree so nothing forks away, SIGKILL each process, thaw so the
// signals land, wait until the cgroups are empty, remove them deepest
// first. A container that is already gone is no error.
func (c *Containerizer) Destroy(containerID string) error {
	if !c.Enabled() || containerID == "" {
		return nil
	}
	cg := c.Cgroup(containerID)
	deadline := time.Now().Add(DestroyTimeout)
	freezer := filepath.Join(c.hierarchies["freezer"], cg)
	if _, err := os.Stat(freezer); err == nil {
		if err := freezeAndKill(freezer, deadline); err != nil {
			return fmt.Errorf("destroying container %s: %w", containerID, err)
		}
	}
	// Every hierarchy the container or anything in it made cgroups in:
	// a container runtime creates its containers' in all of them.
	all, err := allHierarchies()
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range all {
		top := filepath.Join(h, cg)
		if _, err := os.Stat(top); err != nil {
			continue
		}
		if err := removeTree(top, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroying container %s: %w", containerID, err)
	}
	return nil
}

// freezeAndKill kills every process in the subtree at dir as Mesos'
// TasksKiller does: freeze, SIGKILL each process, thaw so the signals land.
// A freeze that does not complete (a process in uninterruptible sleep)
// is answered as MESOS-1689/1758 are: kill what is there, thaw, and try
// again, until the deadline.
func freezeAndKill(dir string, deadline time.Time) error {
	state := filepath.Join(dir, "freezer.state")
	for {
		if err := os.WriteFile(state, []byte("FROZEN"), 0o644); err != nil {
			return fmt.Errorf("freezing %s: %w", dir, err)
		}
		frozen := false
		for wait := time.Now().Add(time.Second); !frozen && time.Now().Before(wait); {
			b, err := os.ReadFile(state)
			if frozen = err == nil && strings.TrimSpace(string(b)) == "FROZEN"; !frozen {
				time.Sleep(20 * time.Millisecond)
			}
		}
		for _, d := range subtree(dir) {
			for _, pid := range procs(d) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := os.WriteFile(state, []byte("THAWED"), 0o644); err != nil {
			return fmt.Errorf("thawing %s: %w", dir, err)
		}
		if frozen {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("freezing %s: did not freeze before the destroy timeout", dir)
		}
	}
}

// removeTree kills what is left in the subtree at top (hierarchies without
// a freezer), waits for it to empty and removes it deepest first.
func removeTree(top string, deadline time.Time) error {
	dirs := subtree(top)
	for _, d := range dirs {
		for _, pid := range procs(d) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, d := range dirs {
		for {
			err := os.Remove(d)
			if err == nil || os.IsNotExist(err) {
				break
			}
			// A cgroup whose last process just died empties a moment later.
			if time.Now().After(deadline) {
				return fmt.Errorf("removing cgroup %s: %w (processes %v)", d, err, procs(d))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// subtree lists dir and the cgroups below it, deepest first.
func subtree(dir string) []string {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	sort.Slice(dirs, func(i, j int) bool { return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/") })
	return dirs
}

func procs(dir string) []int {
	f, err := os.Open(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// The agent's own pid shows while one of its threads forks an
		// executor into the container: never signal it.
		if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && pid > 0 && pid != os.Getpid() {
			out = append(out, pid)
		}
	}
	return out
}

// Processes lists the processes in the container's freezer cgroup and
// below (tests, and the agent's view of what still runs).
func (c *Containerizer) Processes(containerID string) []int {
	if !c.Enabled() {
		return nil
	}
	var out []int
	for _, d := range subtree(filepath.Join(c.hierarchies["freezer"], c.Cgroup(containerID))) {
		out = append(out, procs(d)...)
	}
	return out
}

// v1Hierarchies maps each mounted cgroup v1 subsystem to its mount point.
func v1Hierarchies() (map[string]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return nil, fmt.Errorf("reading cgroup mounts: %w", err)
	}
	out := map[string]string{}
	for _, m := range infos {
		for _, o := range strings.Split(m.VFSOptions, ",") {
			if _, seen := out[o]; !seen && o != "rw" && o != "ro" && !strings.HasPrefix(o, "name=") && !strings.Contains(o, "=") {
				out[o] = m.Mountpoint
			}
		}
	}
	return out, nil
}

// allHierarchies are every cgroup mount (v1 and the hybrid unified one).
func allHierarchies() ([]string, error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("reading cgroup mounts: %w", err)
	}
	var out []string
	for _, m := range infos {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}
