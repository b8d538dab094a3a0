// Package mounts reads this host's mounts (github.com/moby/sys/mountinfo)
// for what k8sm does with them: unmount what the kubelet and containerd
// leave below a directory (the executor's kubelet root dir, the local
// cluster's state directory), and find the cgroup hierarchies.
package mounts

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// UnmountUnder lazily unmounts dir and every mount point below it, deepest
// first. A mount point already gone is not an error.
func UnmountUnder(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("unmounting under %s: %w", dir, err)
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(abs))
	if err != nil {
		return fmt.Errorf("reading mounts under %s: %w", abs, err)
	}
	points := make([]string, 0, len(infos))
	for _, m := range infos {
		points = append(points, m.Mountpoint)
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// Cgroups lists the mount points of every cgroup hierarchy: v1 controllers
// and named hierarchies, and every cgroup2 mount (unified); v2 is the
// unified hierarchy when it is mounted at /sys/fs/cgroup (a pure v2 host;
// hybrid hosts mount it at /sys/fs/cgroup/unified).
func Cgroups() (v1 []string, v2 string, unified []string, err error) {
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
