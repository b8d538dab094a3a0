package kubelet

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"

	"github.com/k8sm/k8sm/pkg/mounts"
)

// ContainerCgroup is the executor's own container cgroup: its cgroup in
// the v1 freezer hierarchy, which the Mesos Linux launcher gives each
// container (<cgroups_root>/<container id>) and destroys, killing every
// process in it and below, when the container ends. Empty when the process
// is in the hierarchy's root (no such launcher) or on cgroup v2 hosts,
// where the executor sits in a leaf that cannot also hold the pods'.
func ContainerCgroup() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	return freezerCgroup(string(b))
}

// freezerCgroup reads the freezer line of a /proc/<pid>/cgroup file.
func freezerCgroup(procCgroup string) string {
	for _, line := range strings.Split(procCgroup, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, sub := range strings.Split(parts[1], ",") {
			if sub == "freezer" && parts[2] != "/" && !strings.Contains(parts[2], "..") {
				return parts[2]
			}
		}
	}
	return ""
}

// EnsureCgroupRoot creates the pods' parent cgroup in every hierarchy: the
// kubelet refuses a --cgroup-root that does not exist, and only an
// embedding program that picked its own root can make it.
func EnsureCgroupRoot(root string) error {
	v1, v2, _, err := mounts.Cgroups()
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
	v1, _, unified, err := mounts.Cgroups()
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

// LeftBehind picks, from the pod cgroups of a runtime's sandboxes, those of
// pods that ran in an earlier container of this executor's agent: their
// cgroup lies under a sibling of own (the executor's container, below the
// agent's cgroups root) whose container cgroup is gone, so the agent has
// destroyed that container and nothing of those pods runs any more. Pods
// of this container (an in-place restart adopts them) and of containers
// that still exist (another framework's executor) are not picked.
func LeftBehind(own string, cgroupParents []string, containerExists func(cgroup string) bool) []bool {
	out := make([]bool, len(cgroupParents))
	if own == "" {
		return out
	}
	root := path.Dir(own) + "/"
	for i, p := range cgroupParents {
		rest, ok := strings.CutPrefix(path.Clean(p), root)
		if !ok {
			continue
		}
		cid, _, _ := strings.Cut(rest, "/")
		container := root + cid
		out[i] = cid != "" && container != own && !containerExists(container)
	}
	return out
}

// FreezerCgroupExists says whether cgroup exists in the freezer hierarchy.
func FreezerCgroupExists(cgroup string) bool {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup"))
	if err != nil {
		return true // when unsure, keep
	}
	for _, m := range infos {
		for _, o := range strings.Split(m.VFSOptions, ",") {
			if o == "freezer" {
				_, err := os.Stat(filepath.Join(m.Mountpoint, cgroup))
				return err == nil || !os.IsNotExist(err)
			}
		}
	}
	return true
}
