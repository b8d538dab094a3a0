package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakePodNetns makes what containerd's CRI plugin and the CNI bridge plugin
// make for a pod: a namespace pinned at /run/netns/cni-<id>, a veth whose
// pod end is eth0 with addr and whose host end, hostVeth, is on no bridge
// (the cluster's bridge is gone, as after a leak). The test removes
// whatever is left of it.
func fakePodNetns(t *testing.T, addr string) (name, hostVeth string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to make network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	name, hostVeth = "cni-k8smtest-"+id, "k8smlk"+id
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "delete", hostVeth).Run()
		_ = exec.Command("ip", "netns", "delete", name).Run()
	})
	for _, args := range [][]string{
		{"netns", "add", name},
		{"link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", name},
		{"link", "set", hostVeth, "up"},
		{"-n", name, "addr", "add", addr, "dev", "eth0"},
		{"-n", name, "link", "set", "eth0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return name, hostVeth
}

// startIn runs argv as a process of its own, in netns name when not empty,
// until the test ends.
func startIn(t *testing.T, name string, argv ...string) *exec.Cmd {
	t.Helper()
	if name != "" {
		argv = append([]string{"ip", "netns", "exec", name}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// fakeContainerd runs a process whose name is containerd, as another
// cluster's would be: the host then has a live containerd, so Down must
// keep to its own namespaces and leave the host-wide things alone.
func fakeContainerd(t *testing.T) {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("needs sleep")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "containerd")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	startIn(t, "", bin, "600")
	// Its name is what the host cleanup looks at: wait until it is there.
	deadline := time.Now().Add(10 * time.Second)
	for !anyContainerdRunning() {
		if time.Now().After(deadline) {
			t.Fatal("the fake containerd does not show in /proc")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeCNIRules makes the nat rules the bridge plugin makes for a pod with
// addr on network (ipMasq): a chain of its own and the jump to it, both
// with CNI's comment. It returns the chain; the test removes both.
func fakeCNIRules(t *testing.T, addr, network string) string {
	t.Helper()
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("needs iptables")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	chain := "CNI-k8smtest" + hex.EncodeToString(b)
	comment := `name: "` + network + `" id: "` + hex.EncodeToString(b) + `"`
	jump := []string{"POSTROUTING", "-s", addr + "/32", "-m", "comment", "--comment", comment, "-j", chain}
	t.Cleanup(func() {
		_ = exec.Command("iptables", append([]string{"-w", "-t", "nat", "-D"}, jump...)...).Run()
		_ = exec.Command("iptables", "-w", "-t", "nat", "-F", chain).Run()
		_ = exec.Command("iptables", "-w", "-t", "nat", "-X", chain).Run()
	})
	for _, args := range [][]string{
		{"-N", chain},
		{"-A", chain, "-d", addr + "/24", "-m", "comment", "--comment", comment, "-j", "ACCEPT"},
		append([]string{"-A"}, jump...),
	} {
		if out, err := exec.Command("iptables", append([]string{"-w", "-t", "nat"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return chain
}

func TestRuleFieldsUnquotesComments(t *testing.T) {
	got := ruleFields(`-A POSTROUTING -s 10.218.0.3/32 -m comment --comment "name: \"k8sm-k8smt98\" id: \"fdc4\"" -j CNI-78d6f91a28e322986030d66e`)
	want := []string{"-A", "POSTROUTING", "-s", "10.218.0.3/32", "-m", "comment", "--comment", `name: "k8sm-k8smt98" id: "fdc4"`, "-j", "CNI-78d6f91a28e322986030d66e"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("ruleFields: %q, want %q", got, want)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// linkGone waits for a link to disappear: a namespace's devices go with it
// when the kernel frees it, which it does a moment later.
func linkGone(name string) bool {
	deadline := time.Now().Add(10 * time.Second)
	for exists("/sys/class/net/" + name) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// TestDownRemovesItsPodNetnsLeftByContainerd: containerd pins each pod's
// network namespace at /run/netns/cni-<id> and removes it only when the
// sandbox is stopped through CRI. A sandbox still being made when the
// cluster's containerd is stopped (or a containerd that died) leaves the
// namespace, its address of the cluster's pod subnet and its veth on the
// host, and maybe a pause process that outlived its shim. Down removes
// those of its own pod subnet, killing what still runs in them, and keeps
// one a process holds open from outside and one of another cluster's
// subnet, even while another cluster's containerd runs.
func TestDownRemovesItsPodNetnsLeftByContainerd(t *testing.T) {
	leaked, leakedVeth := fakePodNetns(t, "10.254.0.3/24")
	paused, pausedVeth := fakePodNetns(t, "10.254.0.4/24")
	pause := startIn(t, paused, "sleep", "600")
	opened, openedVeth := fakePodNetns(t, "10.254.0.5/24")
	f, err := os.Open(netnsPath(opened))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	other, otherVeth := fakePodNetns(t, "10.253.0.3/24")
	fakeContainerd(t)

	// The state directory of a cluster whose pod subnet is 10.254.0.0/16
	// and whose processes are gone.
	stateDir := filepath.Join(t.TempDir(), "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "pod-subnet"), []byte("10.254.0.0/16\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Its containerd's pods were on bridge br; their CNI network made nat
	// rules, as another cluster's did.
	br := "k8smtb" + leakedVeth[len("k8smlk"):]
	if err := os.MkdirAll(filepath.Join(stateDir, "containerd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "containerd", "bridge"), []byte(br+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ownChain := fakeCNIRules(t, "10.254.0.3", cniNetworkName(br))
	otherChain := fakeCNIRules(t, "10.253.0.3", cniNetworkName(br+"x"))

	if err := Down(context.Background(), stateDir); err != nil {
		t.Fatalf("down: %v", err)
	}
	nat, err := exec.Command("iptables", "-w", "-t", "nat", "-S").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(nat), ownChain) || strings.Contains(string(nat), "10.254.0.3/32") {
		t.Errorf("the nat rules of the cluster's pod 10.254.0.3 remain after down:\n%s", nat)
	}
	if !strings.Contains(string(nat), "-A "+otherChain+" ") || !strings.Contains(string(nat), "10.253.0.3/32") {
		t.Errorf("down removed the nat rules of another cluster's pod 10.253.0.3:\n%s", nat)
	}
	for _, ns := range [][2]string{{leaked, leakedVeth}, {paused, pausedVeth}} {
		if exists(netnsPath(ns[0])) {
			t.Errorf("the cluster's pod namespace %s remains after down", ns[0])
		}
		if !linkGone(ns[1]) {
			t.Errorf("the host end %s of its pod's veth remains after down", ns[1])
		}
	}
	if pidAlive(pause.Process.Pid) {
		t.Errorf("the process left in the cluster's pod namespace %s still runs after down", paused)
	}
	if !exists(netnsPath(opened)) || !exists("/sys/class/net/"+openedVeth) {
		t.Errorf("down removed %s, a namespace a process holds open", opened)
	}
	if !exists(netnsPath(other)) || !exists("/sys/class/net/"+otherVeth) {
		t.Errorf("down removed %s, a namespace of another cluster's pod subnet", other)
	}
}

// TestHostCleanupRemovesOrphanPodNetns: with no containerd left on the
// host, no pod namespace can still be in the making, so every cni-*
// namespace no process holds is a leftover (an agent's pods lose their
// veth, and with it their address, when the agent's namespace goes).
func TestHostCleanupRemovesOrphanPodNetns(t *testing.T) {
	if anyContainerdRunning() {
		t.Skip("a containerd runs on this host: its pod namespaces are not orphans")
	}
	orphan, orphanVeth := fakePodNetns(t, "10.253.0.5/24")
	held, heldVeth := fakePodNetns(t, "10.253.0.6/24")
	startIn(t, held, "sleep", "600")

	removeOrphanPodNetns()
	if exists(netnsPath(orphan)) || !linkGone(orphanVeth) {
		t.Errorf("pod namespace %s (or its host veth %s), held by nothing and with no containerd on the host, remains", orphan, orphanVeth)
	}
	if !exists(netnsPath(held)) || !exists("/sys/class/net/"+heldVeth) {
		t.Errorf("the host cleanup removed %s, a namespace a process runs in", held)
	}
}
