package mounts

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// TestUnmountUnder: nested mounts below a directory, one in a path with a
// space (mountinfo writes it as \040), are all unmounted; a mount beside the
// directory whose name merely starts the same is left alone.
func TestUnmountUnder(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root (make test runs as root)")
	}
	base := t.TempDir()
	dir := filepath.Join(base, "root dir")
	nested := filepath.Join(dir, "pods", "vol 1")
	beside := filepath.Join(base, "root dir2")
	for _, d := range []string{dir, beside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount := func(p string) {
		t.Helper()
		if err := unix.Mount("tmpfs", p, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mounting %s: %v", p, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(p, unix.MNT_DETACH) })
	}
	mount(dir)
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	mount(nested)
	mount(beside)

	if err := UnmountUnder(dir); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{dir: false, nested: false, beside: true} {
		got, err := mountinfo.Mounted(p)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s mounted: %v, want %v", p, got, want)
		}
	}
	if err := UnmountUnder(filepath.Join(base, "nothing here")); err != nil {
		t.Errorf("nothing mounted: %v", err)
	}
}

// TestCgroups: every hierarchy found is a cgroup file system of its kind
// (as the kernel says, not the mount table), and /sys/fs/cgroup is the v2
// hierarchy exactly when it is a cgroup2 file system.
func TestCgroups(t *testing.T) {
	v1, v2, unified, err := Cgroups()
	if err != nil {
		t.Fatal(err)
	}
	if len(v1)+len(unified) == 0 {
		t.Fatal("no cgroup hierarchy found; every Linux host running k8sm has one")
	}
	fsType := func(p string) int64 {
		t.Helper()
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			t.Fatal(err)
		}
		return st.Type
	}
	for _, p := range v1 {
		if fsType(p) != unix.CGROUP_SUPER_MAGIC {
			t.Errorf("%s is listed as a cgroup v1 hierarchy but is not one", p)
		}
	}
	for _, p := range unified {
		if fsType(p) != unix.CGROUP2_SUPER_MAGIC {
			t.Errorf("%s is listed as a cgroup2 hierarchy but is not one", p)
		}
	}
	if pure := fsType("/sys/fs/cgroup") == unix.CGROUP2_SUPER_MAGIC; pure != (v2 == "/sys/fs/cgroup") {
		t.Errorf("v2 = %q, but /sys/fs/cgroup is cgroup2: %v", v2, pure)
	}
}
