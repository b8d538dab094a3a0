package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/netns"
)

// Pod network namespaces. containerd 1.6's CRI plugin pins every pod's
// network namespace at /run/netns/cni-<id> (a fixed host path, whatever its
// configuration) and removes it only when the sandbox is stopped through
// CRI. Down stops and removes every sandbox first, but a sandbox still being
// made then (RunPodSandbox after the kubelet that asked was killed: containerd
// tears the half-made pod down on its own a moment later, unless it is
// stopped first) or a containerd that died leaves the namespace behind,
// with its address of the pod subnet and a veth whose other end is on the
// host or in an agent's namespace. These functions remove such leftovers:
// only namespaces no process holds, and only those that are certainly the
// cluster's (its pod subnet) or that no running containerd can be making.

// podNetnsGlob matches the namespaces containerd's CRI plugin makes.
const podNetnsGlob = "/run/netns/cni-*"

// podSubnetFile records the cluster's pod subnet in its state directory, so
// that Down knows which pod namespaces are its own.
func podSubnetFile(stateDir string) string { return filepath.Join(stateDir, "pod-subnet") }

func recordPodSubnet(c Config) error {
	if err := os.WriteFile(podSubnetFile(c.StateDir), []byte(c.PodSubnet+"\n"), 0o644); err != nil {
		return fmt.Errorf("recording the pod subnet: %w", err)
	}
	return nil
}

// removeOwnPodNetns removes the pod namespaces of the cluster in stateDir
// that no process holds: those with an address in its pod subnet. Every pod
// subnet is the cluster's alone (Up refuses a bridge, hence a test
// cluster's subnet, another cluster uses), so this holds while other
// clusters run. Called once the cluster's containerds and shims are gone,
// before the agents' namespaces (where its pods' veths end) are.
func removeOwnPodNetns(stateDir string) error {
	b, err := os.ReadFile(podSubnetFile(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	subnet, err := netip.ParsePrefix(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("reading %s: %w", podSubnetFile(stateDir), err)
	}
	// Its pods' processes that outlived their shims (a pause started just
	// before containerd stopped) die with the cluster.
	return removePodNetns(true, func(ns podNetns) bool {
		for _, a := range ns.addrs {
			if subnet.Contains(a) {
				return true
			}
		}
		return false
	})
}

// removeOrphanPodNetns removes every pod namespace no process holds, once
// no containerd runs on the host: none can be in the making, so they are
// all leftovers (an agent's pods even lost their veth and address when the
// agent's namespace went).
func removeOrphanPodNetns() {
	if anyContainerdRunning() {
		return
	}
	if err := removePodNetns(false, func(podNetns) bool { return true }); err != nil {
		klog.InfoS("Could not remove every leftover pod network namespace", "err", err)
	}
	// Results cached for namespaces that are gone can serve no CNI DEL.
	removeCNIResultsIf(func(netns string) bool {
		_, err := os.Lstat(netns)
		return errors.Is(err, os.ErrNotExist)
	})
}

// podNetns is one /run/netns/cni-* namespace as found.
type podNetns struct {
	path   string
	pinned bool // a namespace is mounted there (else a bare file)
	ino    uint64
	links  []string // its interfaces but lo
	addrs  []netip.Addr
}

// removePodNetns removes each pod namespace that mine says is to go and that
// no process holds; with kill, the processes in it are killed first (a
// process holding it open from outside is never killed). Its interfaces go
// first (deleting one end of a veth deletes the other, on the host or in an
// agent's namespace, at once), then the namespace, then the CNI plugins'
// cached results naming it.
func removePodNetns(kill bool, mine func(podNetns) bool) error {
	paths := glob(podNetnsGlob)
	if len(paths) == 0 {
		return nil
	}
	in, open := netnsHolders()
	var errs []error
	var removed []string
	for _, p := range paths {
		ns, err := inspectPodNetns(p)
		if err != nil {
			klog.V(2).InfoS("Keeping pod network namespace", "path", p, "err", err)
			continue
		}
		if !mine(ns) {
			continue
		}
		if ns.pinned && kill && len(in[ns.ino]) > 0 && !open[ns.ino] {
			klog.InfoS("Killing the processes left in a pod network namespace", "path", p, "pids", in[ns.ino])
			killAndWait(in[ns.ino])
			in, open = netnsHolders()
		}
		if ns.pinned && (len(in[ns.ino]) > 0 || open[ns.ino]) {
			klog.InfoS("Keeping pod network namespace a process holds", "path", p, "pids", in[ns.ino])
			continue
		}
		klog.InfoS("Removing leftover pod network namespace", "path", p, "interfaces", ns.links, "addresses", ns.addrs)
		name := filepath.Base(p)
		for _, l := range ns.links {
			if out, err := exec.Command("ip", "-n", name, "link", "delete", l).CombinedOutput(); err != nil {
				klog.V(2).InfoS("Deleting interface of a leftover pod namespace", "netns", name, "interface", l, "err", err, "output", strings.TrimSpace(string(out)))
			}
		}
		if ns.pinned {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("unmounting pod network namespace %s: %w", p, err))
				continue
			}
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing pod network namespace %s: %w", p, err))
			continue
		}
		removed = append(removed, name)
	}
	removeCNIResults(removed)
	return errors.Join(errs...)
}

// inspectPodNetns reads what is at p: a bare file (containerd makes the file,
// then mounts the namespace on it) or a namespace, with its interfaces.
func inspectPodNetns(p string) (podNetns, error) {
	ns := podNetns{path: p}
	var fs unix.Statfs_t
	if err := unix.Statfs(p, &fs); err != nil {
		return ns, err
	}
	if fs.Type != unix.NSFS_MAGIC {
		return ns, nil
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return ns, err
	}
	ns.pinned, ns.ino = true, st.Ino
	err := netns.Do(p, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, i := range ifs {
			if i.Flags&net.FlagLoopback != 0 {
				continue
			}
			ns.links = append(ns.links, i.Name)
			addrs, err := i.Addrs()
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok {
						ns.addrs = append(ns.addrs, ip.Unmap())
					}
				}
			}
		}
		return nil
	})
	return ns, err
}

// netnsHolders says, by network namespace inode, which other processes are
// in it (any of their threads: a pod's pause process, a CNI plugin at work)
// and whether a process holds it open (containerd making one).
func netnsHolders() (in map[uint64][]int, open map[uint64]bool) {
	in, open = map[uint64][]int{}, map[uint64]bool{}
	ino := func(link string) (uint64, bool) {
		t, err := os.Readlink(link)
		if err != nil || !strings.HasPrefix(t, "net:[") {
			return 0, false
		}
		var n uint64
		_, err = fmt.Sscanf(t, "net:[%d]", &n)
		return n, err == nil
	}
	self := os.Getpid()
	for _, l := range glob("/proc/[0-9]*/task/[0-9]*/ns/net") {
		var pid int
		// This process's own threads enter a namespace only to read it
		// (inspectPodNetns), and one may linger there a moment after.
		if _, err := fmt.Sscanf(l, "/proc/%d/", &pid); err != nil || pid == self {
			continue
		}
		if n, ok := ino(l); ok && !slices.Contains(in[n], pid) {
			in[n] = append(in[n], pid)
		}
	}
	for _, l := range glob("/proc/[0-9]*/fd/*") {
		if n, ok := ino(l); ok {
			open[n] = true
			continue
		}
		// A namespace opened through its pin reads as the pin's path.
		if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, "/run/netns/") {
			var st unix.Stat_t
			if unix.Stat(l, &st) == nil {
				open[st.Ino] = true
			}
		}
	}
	return in, open
}

// killAndWait SIGKILLs pids and waits up to 10 s for them to end.
func killAndWait(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if !slices.ContainsFunc(pids, pidAlive) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// removeCNIResults removes the results libcni cached for interfaces in the
// named namespaces (/var/lib/cni/results: CNI DEL would have removed them).
func removeCNIResults(names []string) {
	if len(names) == 0 {
		return
	}
	gone := map[string]bool{}
	for _, n := range names {
		gone[n] = true
	}
	removeCNIResultsIf(func(netns string) bool { return gone[filepath.Base(netns)] })
}

// removeCNIResultsIf removes each cached CNI result one of whose network
// namespaces stale says is gone.
func removeCNIResultsIf(stale func(netns string) bool) {
	for _, f := range glob("/var/lib/cni/results/*") {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var cached struct {
			NetNS  string `json:"netns"`
			Result struct {
				Interfaces []struct {
					Sandbox string `json:"sandbox"`
				} `json:"interfaces"`
			} `json:"result"`
		}
		if json.Unmarshal(b, &cached) != nil {
			continue
		}
		paths := []string{cached.NetNS}
		for _, i := range cached.Result.Interfaces {
			paths = append(paths, i.Sandbox)
		}
		if slices.ContainsFunc(paths, func(p string) bool { return p != "" && stale(p) }) {
			_ = os.Remove(f)
		}
	}
}
