package cluster

import (
	"os/exec"
	"regexp"
	"strings"

	"k8s.io/klog/v2"
)

// CNI's nat rules. For each pod the bridge plugin (ipMasq) adds a rule in
// POSTROUTING to a chain CNI-<hash> of its own, and the portmap plugin one
// in CNI-HOSTPORT-DNAT to CNI-DN-<hash>; each carries a comment naming the
// network and the sandbox. CNI DEL removes them; a pod sandbox that was
// never stopped through CRI (podnetns.go) keeps them. Pods in an agent's
// namespace have them there, and they go with it: only the control plane's
// containerd, on the host, leaves them on the host.

// cniComment is what the plugins write: `name: "<network>" id: "<sandbox>"`
// (portmap prefixes "dnat ").
var cniComment = regexp.MustCompile(`name: "([^"]*)" id: "([^"]*)"`)

// removeCNINatRules deletes the host's nat rules of the pods of every CNI
// network match accepts, and the per-pod chains they jump to.
func removeCNINatRules(match func(network string) bool) {
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		return
	}
	out, err := exec.Command(ipt, "-w", "-t", "nat", "-S").Output()
	if err != nil {
		return
	}
	type rule struct {
		chain string
		args  []string
	}
	var rules []rule
	drop := map[string]bool{}
	for _, l := range strings.Split(string(out), "\n") {
		f := ruleFields(l)
		if len(f) < 3 || f[0] != "-A" {
			continue
		}
		var comment, target string
		for i := 2; i+1 < len(f); i++ {
			switch f[i] {
			case "--comment":
				comment = f[i+1]
			case "-j":
				target = f[i+1]
			}
		}
		m := cniComment.FindStringSubmatch(comment)
		if m == nil || !match(m[1]) {
			continue
		}
		rules = append(rules, rule{chain: f[1], args: f[2:]})
		// The pod's own chains: the one jumped to, and the one the rule is
		// in (its jump may be gone already).
		for _, c := range []string{target, f[1]} {
			if strings.HasPrefix(c, "CNI-") && !strings.HasPrefix(c, "CNI-HOSTPORT-") {
				drop[c] = true
			}
		}
	}
	for _, r := range rules {
		if drop[r.chain] {
			continue // flushed with its chain
		}
		klog.InfoS("Removing a leftover CNI rule", "chain", r.chain, "rule", strings.Join(r.args, " "))
		if out, err := exec.Command(ipt, append([]string{"-w", "-t", "nat", "-D", r.chain}, r.args...)...).CombinedOutput(); err != nil {
			klog.V(2).InfoS("Deleting a CNI rule", "chain", r.chain, "err", err, "output", strings.TrimSpace(string(out)))
		}
	}
	for c := range drop {
		_ = exec.Command(ipt, "-w", "-t", "nat", "-F", c).Run()
		_ = exec.Command(ipt, "-w", "-t", "nat", "-X", c).Run()
	}
}

// ruleFields splits a line of `iptables -S` into the arguments that made
// it: a quoted argument (a comment) is one, with its \" unescaped.
func ruleFields(line string) []string {
	var out []string
	var cur strings.Builder
	inQuotes, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuotes && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			inQuotes, have = !inQuotes, true
		case c == ' ' && !inQuotes:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}
