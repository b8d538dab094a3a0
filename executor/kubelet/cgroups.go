package kubelet

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/k8sm/k8sm/pkg/mounts"
)

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
