package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
)

// cleanHostLeftovers removes host-wide things that containerd and CNI make
// once and never remove: the portmap plugin's scaffolding chains in the nat
// table and containerd's default "k8s.io" cgroups. They are shared by every
// containerd on the host, so they are only touched when no containerd runs
// any more, and only when empty.
func cleanHostLeftovers() {
	if anyContainerdRunning() {
		return
	}
	for _, dir := range glob("/sys/fs/cgroup/*/k8s.io") {
		// rmdir fails on a cgroup that still has children or tasks: that
		// is exactly the protection wanted.
		if err := os.Remove(dir); err != nil && !os.IsNotExist(err) {
			klog.V(2).InfoS("Keeping cgroup", "dir", dir, "err", err)
		}
	}
	removePortmapChains()
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
