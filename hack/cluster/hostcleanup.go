package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/executor/kernel"
)

// cleanHostLeftovers removes host-wide things that containerd and CNI make
// once and never remove: the portmap plugin's scaffolding chains in the nat
// table, containerd's default "k8s.io" cgroups and pod network namespaces
// no process holds (podnetns.go). They are shared by every
// containerd on the host, so they are only touched when no containerd runs
// any more, and only when empty.
func cleanHostLeftovers() {
	if anyContainerdRunning() {
		return
	}
	// The kubelets' chains are shared by every kubelet on the host too.
	if !anyExecutorRunning() {
		removeKubeletChains()
		// The device manager's socket has a fixed host path, whatever the
		// kubelet's root dir.
		_ = os.Remove("/var/lib/kubelet/device-plugins/kubelet.sock")
		removeEmptyDirs("/var/lib/kubelet/device-plugins", "/var/lib/kubelet")
		// An executor that was killed left the host's own kernel settings
		// in its file: give them back as its next start would.
		restoreKernelDefaults(kernel.Defaults{})
	}
	// A shim that was killed leaves its socket; with no shim left on the
	// host every one there is stale.
	if !anyCommRunning("containerd-shim") {
		for _, f := range glob("/run/containerd/s/*") {
			if st, err := os.Lstat(f); err == nil && st.Mode()&os.ModeSocket != 0 {
				_ = os.Remove(f)
			}
		}
	}
	// No containerd is making a pod namespace: those left are leftovers.
	removeOrphanPodNetns()
	// Host directories containerd, its shims and CNI make on first use,
	// once empty: shim sockets, runc state, CNI result cache, netns mounts.
	removeEmptyDirs("/run/containerd/s", "/run/containerd/runc/k8s.io", "/run/containerd/runc", "/run/containerd",
		"/var/lib/cni/results", "/var/lib/cni", "/run/netns")
	for _, dir := range glob("/sys/fs/cgroup/*/k8s.io") {
		// Its children are the containers' (a pod whose containerd died
		// and whose processes Down killed leaves them), then itself. rmdir
		// fails on a cgroup that still has children or tasks: that is
		// exactly the protection wanted.
		dirs := append(glob(filepath.Join(dir, "*", "*")), append(glob(filepath.Join(dir, "*")), dir)...)
		for _, d := range dirs {
			if st, err := os.Lstat(d); err != nil || !st.IsDir() {
				continue
			}
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				klog.V(2).InfoS("Keeping cgroup", "dir", d, "err", err)
			}
		}
	}
	// With no containerd, no pod of any CNI network is left.
	removeCNINatRules(func(string) bool { return true })
	removePortmapChains()
}

func restoreKernelDefaults(k kernel.Defaults) {
	if _, err := os.Stat(kernel.DefaultFile); err != nil {
		return
	}
	logger := klog.Background()
	saved, err := k.Record(logger)
	if err != nil {
		logger.Error(err, "Restoring the host's kernel settings a killed executor left")
		return
	}
	k.Restore(logger, saved)
	removeEmptyDirs(filepath.Dir(kernel.DefaultFile))
}

func anyContainerdRunning() bool {
	for _, f := range glob("/proc/[0-9]*/comm") {
		var pid int
		if _, err := fmt.Sscanf(f, "/proc/%d/comm", &pid); err != nil {
			continue
		}
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == "containerd" && pidAlive(pid) {
			return true
		}
	}
	return false
}

// anyCommRunning reports whether a live process has this command name
// (/proc/<pid>/comm: the first 15 bytes of the program's name).
func anyCommRunning(comm string) bool {
	for _, f := range glob("/proc/[0-9]*/comm") {
		var pid int
		if _, err := fmt.Sscanf(f, "/proc/%d/comm", &pid); err != nil {
			continue
		}
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == comm && pidAlive(pid) {
			return true
		}
	}
	return false
}

// anyExecutorRunning reports whether a kubelet runs on the host: embedded
// in a k8sm-executor of any cluster, or a stock one.
func anyExecutorRunning() bool {
	for _, f := range glob("/proc/[0-9]*/comm") {
		var pid int
		if _, err := fmt.Sscanf(f, "/proc/%d/comm", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if c := strings.TrimSpace(string(b)); (c == "k8sm-executor" || c == "kubelet") && pidAlive(pid) {
			return true
		}
	}
	return false
}

// removeEmptyDirs removes each directory that is empty, in order (children
// first); a directory with anything in it is kept.
func removeEmptyDirs(dirs ...string) {
	for _, d := range dirs {
		if err := unix.Rmdir(d); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			klog.V(2).InfoS("Keeping directory", "dir", d, "err", err)
		}
	}
}

// kubeletChains are the chains an embedded kubelet makes and never removes
// (pkg/kubelet/kubelet_network_linux.go): a canary to notice flushes, the
// hint for kube-proxy's iptables mode, and the firewall against outside
// packets addressed to 127.0.0.0/8.
var kubeletChains = map[string][]string{
	"filter": {"KUBE-FIREWALL", "KUBE-KUBELET-CANARY"},
	"nat":    {"KUBE-KUBELET-CANARY"},
	"mangle": {"KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"},
}

// removeKubeletChains deletes kubeletChains and the rules that jump to
// them, in IPv4 and IPv6. Only called when no kubelet of any cluster runs.
func removeKubeletChains() {
	for _, prog := range []string{"iptables", "ip6tables"} {
		ipt, err := exec.LookPath(prog)
		if err != nil {
			continue
		}
		for table, chains := range kubeletChains {
			rules, err := exec.Command(ipt, "-w", "-t", table, "-S").Output()
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(rules), "\n") {
				for _, c := range chains {
					if strings.HasPrefix(l, "-A ") && strings.HasSuffix(l, "-j "+c) && !strings.HasPrefix(l, "-A "+c+" ") {
						args := append([]string{"-w", "-t", table, "-D"}, strings.Fields(strings.TrimPrefix(l, "-A "))...)
						_ = exec.Command(ipt, unquote(args)...).Run()
					}
				}
			}
			for _, c := range chains {
				_ = exec.Command(ipt, "-w", "-t", table, "-F", c).Run()
				_ = exec.Command(ipt, "-w", "-t", table, "-X", c).Run()
			}
		}
	}
}

// removeContainerLogLinks removes the kubelets' links in
// /var/log/containers (a fixed host path, whatever the root dir) that point
// into stateDir: an executor that was killed leaves them.
func removeContainerLogLinks(stateDir string) {
	for _, l := range glob("/var/log/containers/*.log") {
		if t, err := os.Readlink(l); err == nil && strings.HasPrefix(t, stateDir+"/") {
			_ = os.Remove(l)
		}
	}
}

// portmapChains are made by the CNI portmap plugin on its first use.
var portmapChains = []struct{ chain, from string }{
	{chain: "CNI-HOSTPORT-DNAT", from: "PREROUTING"},
	{chain: "CNI-HOSTPORT-DNAT", from: "OUTPUT"},
	{chain: "CNI-HOSTPORT-MASQ", from: "POSTROUTING"},
	{chain: "CNI-HOSTPORT-SETMARK"},
}

func removePortmapChains() {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		return
	}
	out, err := exec.Command(ipt, "-w", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT").Output()
	if err != nil {
		return // no chain: nothing to do
	}
	// A rule inside the DNAT chain belongs to a live pod of some network.
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "-A ") {
			return
		}
	}
	rules, _ := exec.Command(ipt, "-w", "-t", "nat", "-S").Output()
	for _, l := range strings.Split(string(rules), "\n") {
		for _, c := range portmapChains {
			if c.from != "" && strings.HasPrefix(l, "-A "+c.from+" ") && strings.HasSuffix(l, "-j "+c.chain) {
				args := append([]string{"-w", "-t", "nat", "-D"}, strings.Fields(strings.TrimPrefix(l, "-A "))...)
				_ = exec.Command(ipt, unquote(args)...).Run()
			}
		}
	}
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"} {
		_ = exec.Command(ipt, "-w", "-t", "nat", "-F", c).Run()
		_ = exec.Command(ipt, "-w", "-t", "nat", "-X", c).Run()
	}
}

// unquote strips the quotes iptables -S puts around comments; the rule is
// matched by its fields, so a comment split into words must be rejoined.
func unquote(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, `"`) {
			parts := []string{strings.TrimPrefix(a, `"`)}
			for !strings.HasSuffix(parts[len(parts)-1], `"`) && i+1 < len(args) {
				i++
				parts = append(parts, args[i])
			}
			parts[len(parts)-1] = strings.TrimSuffix(parts[len(parts)-1], `"`)
			a = strings.Join(parts, " ")
		}
		out = append(out, a)
	}
	return out
}

func glob(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
}

// stopOrder lists the components with a pid file in stateDir, the last
// started first: agents' containerds, then the control plane in reverse.
func stopOrder(stateDir string) []string {
	rank := map[string]int{"kube-scheduler": 0, "k8sm-broker": 1, "mesos-sim": 2, "containerd": 4,
		"zookeeper": 5, "kube-controller-manager": 6, "kube-apiserver": 7, "etcd": 8}
	var names []string
	for _, f := range glob(filepath.Join(stateDir, "pids", "*.pid")) {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".pid"))
	}
	r := func(n string) int {
		if v, ok := rank[n]; ok {
			return v
		}
		if strings.HasPrefix(n, "containerd-") {
			return 3
		}
		return -1 // unknown: stop it first
	}
	sort.SliceStable(names, func(i, j int) bool { return r(names[i]) < r(names[j]) })
	return names
}

// executorsOf are the k8sm-executor processes of the cluster in stateDir:
// their agent gave them a kubelet root below it.
func executorsOf(stateDir, runDir string) []int {
	var pids []int
	for _, f := range glob("/proc/[0-9]*/cmdline") {
		var pid int
		if _, err := fmt.Sscanf(f, "/proc/%d/cmdline", &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		argv0, _, _ := strings.Cut(string(b), "\x00")
		if filepath.Base(argv0) != "k8sm-executor" || !pidAlive(pid) {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for _, dir := range []string{stateDir, runDir} {
			if strings.Contains("\x00"+string(env), "\x00K8SM_ROOT_DIR="+dir+"/") {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// stopExecutors asks the cluster's executors to stop (SIGTERM: each stops
// its pods, removes their cgroups and mounts, restores the kernel settings
// its kubelet changed) and kills those that take longer than a minute.
func stopExecutors(stateDir, runDir string) {
	pids := executorsOf(stateDir, runDir)
	if len(pids) == 0 {
		return
	}
	klog.InfoS("Stopping executors", "pids", pids)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		alive := 0
		for _, pid := range pids {
			if pidAlive(pid) {
				alive++
			}
		}
		if alive == 0 {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, pid := range pids {
		if pidAlive(pid) {
			klog.InfoS("Executor did not stop within a minute; killing it", "pid", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeCgroupParent removes the cgroups the agents' kubelets made (an
// executor that was killed leaves them), deepest first. Only empty cgroups
// can be removed, which is the protection wanted.
func removeCgroupParent(stateDir string) error {
	b, err := os.ReadFile(filepath.Join(stateDir, "cgroup-parent"))
	if err != nil {
		return nil
	}
	parent := strings.TrimSpace(string(b))
	if parent == "" || parent == "/" || strings.Contains(parent, "..") {
		return nil
	}
	var dirs []string
	for _, root := range glob("/sys/fs/cgroup/*" + parent) {
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	var errs []error
	for _, d := range dirs {
		var lastErr error
		// A cgroup whose last task just died may take a moment to empty.
		for try := 0; try < 20; try++ {
			if lastErr = os.Remove(d); lastErr == nil || os.IsNotExist(lastErr) {
				lastErr = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if lastErr != nil {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", d, lastErr))
		}
	}
	return errors.Join(errs...)
}
