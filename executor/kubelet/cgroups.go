package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// cgroupMounts lists the mount points of every cgroup hierarchy (v1
// controllers and named hierarchies, or the v2 unified one).
// v2 is the unified hierarchy when it is the only one; hybrid hosts also
// have one at /sys/fs/cgroup/unified, listed in unified.
func cgroupMounts() (v1 []string, v2 string, err error) {
	v1, v2, _, err = allCgroupMounts()
	return v1, v2, err
}

func allCgroupMounts() (v1 []string, v2 string, unified []string, err error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, "", nil, fmt.Errorf("reading cgroup mounts: %w", err)
	}
	for _, m := range infos {
		if m.FSType == "cgroup" {
			v1 = append(v1, m.Mountpoint)
			continue
		}
		unified = append(unified, m.Mountpoint)
		if m.Mountpoint == "/sys/fs/cgroup" {
			v2 = m.Mountpoint
		}
	}
	return v1, v2, unified, nil
}

// EnsureCgroupRoot creates the pods' parent cgroup in every hierarchy: the
// kubelet refuses a --cgroup-root that does not exist, and only an
// embedding program that picked its own root can make it.
func EnsureCgroupRoot(root string) error {
	v1, v2, err := cgroupMounts()
	if err != nil {
		return err
	}
	if len(v1) == 0 && v2 != "" {
		// cgroup v2: the controllers must be enabled down to the root's parent.
		parts := strings.Split(strings.Trim(root, "/"), "/")
		dir := v2
		for _, p := range parts {
			if b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers")); err == nil {
				var enable []string
				for _, c := range strings.Fields(string(b)) {
					enable = append(enable, "+"+c)
				}
				_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644)
			}
			dir = filepath.Join(dir, p)
			if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
				return fmt.Errorf("creating cgroup %s: %w", dir, err)
			}
		}
		return nil
	}
	for _, m := range v1 {
		if err := os.MkdirAll(filepath.Join(m, root), 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s in %s: %w", root, m, err)
		}
	}
	return nil
}

// RemoveCgroupRoot removes the pods' cgroups, deepest first, once nothing
// runs in them; cgroups still in use stay (and are reported).
func RemoveCgroupRoot(root string) error {
	v1, _, unified, err := allCgroupMounts()
	if err != nil {
		return err
	}
	// runc also creates the pods' cgroups in a hybrid host's unified hierarchy.
	mounts := append(v1, unified...)
	var dirs []string
	for _, m := range mounts {
		top := filepath.Join(m, root)
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var busy []string
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
			busy = append(busy, d)
		}
	}
	// The shared parent (/k8sm) goes when the last node's root is gone.
	for _, m := range mounts {
		_ = os.Remove(filepath.Dir(filepath.Join(m, root)))
	}
	if len(busy) > 0 {
		return fmt.Errorf("cgroups still in use: %s", strings.Join(busy, ", "))
	}
	return nil
}
