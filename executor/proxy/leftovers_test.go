package proxy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/k8sm/k8sm/hack/netns"
)

// staleRules is what a kube-proxy (iptables mode) killed with its executor
// leaves: its jump rules, as the stock proxier writes them, and the chains
// of a Service whose only endpoint was one of the killed executor's pods.
const staleRules = `*nat
:KUBE-SERVICES - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-ABCDEFGHIJKLMNOP - [0:0]
:KUBE-SEP-ABCDEFGHIJKLMNOP - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A KUBE-SERVICES -d 10.96.0.20/32 -p tcp -m comment --comment "ns/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-ABCDEFGHIJKLMNOP
-A KUBE-SVC-ABCDEFGHIJKLMNOP -j KUBE-SEP-ABCDEFGHIJKLMNOP
-A KUBE-SEP-ABCDEFGHIJKLMNOP -p tcp -m tcp -j DNAT --to-destination 10.88.1.5:8080
COMMIT
*filter
:KUBE-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
COMMIT
`

// proxyChains lists the chains of kube-proxy in the namespace's iptables
// (the kubelet's own KUBE-FIREWALL, KUBE-KUBELET-CANARY and
// KUBE-IPTABLES-HINT are not kube-proxy's).
func proxyChains(t *testing.T, ns string) []string {
	t.Helper()
	var out []byte
	err := netns.Do(ns, func() (err error) {
		out, err = exec.Command("iptables-save").CombinedOutput()
		return err
	})
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	var chains []string
	for _, l := range strings.Split(string(out), "\n") {
		name, ok := strings.CutPrefix(l, ":KUBE-")
		if !ok {
			continue
		}
		name = "KUBE-" + strings.Fields(name)[0]
		switch name {
		case "KUBE-FIREWALL", "KUBE-KUBELET-CANARY", "KUBE-IPTABLES-HINT":
		default:
			chains = append(chains, name)
		}
	}
	return chains
}

// TestLeftoversOfAKilledExecutorAreRemoved: an executor that starts where
// an earlier one was killed (its record names another pid) removes the
// rules that one's kube-proxy left, in every mode; one restarted in place
// (its own pid) keeps them for its pods; without a record nothing is
// touched. In a network namespace of its own, with the real iptables.
func TestLeftoversOfAKilledExecutorAreRemoved(t *testing.T) {
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Fatalf("this test needs iptables (Debian: apt-get install iptables): %v", err)
	}
	name := fmt.Sprintf("k8sm-proxytest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("creating network namespace %s (needs root): %v: %s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	ns := "/run/netns/" + name
	leave := func() {
		t.Helper()
		err := netns.Do(ns, func() error {
			cmd := exec.Command("iptables-restore", "--noflush")
			cmd.Stdin = strings.NewReader(staleRules)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("writing a killed kube-proxy's rules: %v", err)
		}
	}
	remove := func(dir string, self int) error {
		return netns.Do(ns, func() error { return RemoveLeftovers(context.Background(), dir, self) })
	}
	leave()
	if len(proxyChains(t, ns)) == 0 {
		t.Fatal("no kube-proxy chain after writing them: the check below could not fail")
	}
	dir := t.TempDir()
	self := os.Getpid()

	// No record: no k8sm kube-proxy ran here; rules are someone else's.
	if err := remove(dir, self); err != nil {
		t.Fatal(err)
	}
	if len(proxyChains(t, ns)) == 0 {
		t.Error("rules removed without a record of a k8sm kube-proxy")
	}
	// Restarted in place: the same pid keeps its rules.
	if err := os.WriteFile(ownerFile(dir), []byte(strconv.Itoa(self)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := remove(dir, self); err != nil {
		t.Fatal(err)
	}
	if len(proxyChains(t, ns)) == 0 {
		t.Error("an executor restarted in place removed its own kube-proxy's rules")
	}
	// Killed: the next executor (another pid) removes them and the record.
	if err := remove(dir, self+1); err != nil {
		t.Fatal(err)
	}
	if left := proxyChains(t, ns); len(left) > 0 {
		t.Errorf("kube-proxy chains left after the next executor's start: %v", left)
	}
	if _, err := os.Stat(ownerFile(dir)); !os.IsNotExist(err) {
		t.Errorf("record %s after the rules were removed: %v", ownerFile(dir), err)
	}
}
