package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"k8s.io/klog/v2"
)

// The agents' network: each Mesos agent of the local cluster is a machine
// of its own, a network namespace (its mesos-sim agent's listener, its
// containerd, its executor and kubelet, its pods), joined to the others
// and to the host by a veth on one bridge of the host. The host holds the
// control plane and is reachable from every agent at HostIP; agent i is
// AgentIP(i). Nothing here leaves the machine: the link's subnet, the pod
// subnet and the service subnet are routed locally or not at all. The host
// routes no pod addresses: pods reach it with their agent's address
// (executor/podnet masquerades what leaves the pod subnet).

// HostIP is the host's address on the agents' link: where agents reach
// the API server, and what it advertises to pods.
func (c Config) HostIP() string { return c.linkAddr(1) }

// AgentIP is the address of agent i (1-based) on the link: its Node's
// InternalIP, its kubelet's and its Mesos agent's address.
func (c Config) AgentIP(i int) string { return c.linkAddr(10 + i) }

func (c Config) linkAddr(n int) string {
	p, err := netip.ParsePrefix(c.HostSubnet)
	if err != nil {
		return ""
	}
	a := p.Masked().Addr().As4()
	a[3] += byte(n)
	return netip.AddrFrom4(a).String()
}

// AgentNetNS is the name of agent i's network namespace (/run/netns/<name>).
func (c Config) AgentNetNS(i int) string { return fmt.Sprintf("%s-a%d", c.CNIBridge, i) }

func netnsPath(name string) string { return "/run/netns/" + name }

// agentBridge is the pods' bridge inside every agent's namespace.
const agentBridge = "cni0"

// networkRecord is what Down needs to undo the agents' network; it is
// written before anything is made.
type networkRecord struct {
	Bridge     string   `json:"bridge"`
	Namespaces []string `json:"namespaces"`
	// Routes are host routes to delete, as `ip route` arguments.
	Routes [][]string `json:"routes"`
}

func networkRecordPath(stateDir string) string { return filepath.Join(stateDir, "network.json") }

func (c Config) validateNetwork() error {
	lp, err := netip.ParsePrefix(c.HostSubnet)
	if err != nil || !lp.Addr().Is4() || lp.Bits() > 24 {
		return fmt.Errorf("agents' link subnet %q: want an IPv4 CIDR of /24 or larger (K8SM_HOST_SUBNET)", c.HostSubnet)
	}
	pp, err := netip.ParsePrefix(c.PodSubnet)
	if err != nil || !pp.Addr().Is4() || pp.Bits() > 16 {
		return fmt.Errorf("pod subnet %q: want an IPv4 CIDR of /16 or larger (K8SM_POD_SUBNET)", c.PodSubnet)
	}
	sp, err := netip.ParsePrefix(c.ServiceSubnet)
	if err != nil || !sp.Addr().Is4() {
		return fmt.Errorf("service subnet %q: want an IPv4 CIDR (K8SM_SERVICE_SUBNET)", c.ServiceSubnet)
	}
	if c.NodePortsBegin <= c.AgentPortsEnd && c.AgentPortsBegin <= c.NodePortsEnd {
		return fmt.Errorf("the NodePort range %d-%d overlaps the host ports the agents offer to Mesos (%d-%d): kube-proxy takes every NodePort on every agent, so a pod given one of them as host port could not bind it; choose ranges apart with K8SM_NODE_PORTS and K8SM_AGENT_HOST_PORTS",
			c.NodePortsBegin, c.NodePortsEnd, c.AgentPortsBegin, c.AgentPortsEnd)
	}
	for _, pair := range [][2]netip.Prefix{{lp, pp}, {lp, sp}, {pp, sp}} {
		if pair[0].Overlaps(pair[1]) {
			return fmt.Errorf("subnets %s and %s overlap: the agents' link (K8SM_HOST_SUBNET), pods (K8SM_POD_SUBNET) and services (K8SM_SERVICE_SUBNET) need ranges of their own", pair[0], pair[1])
		}
	}
	return nil
}

// blackholeRoutes keep the pod and service ranges on this machine: a
// packet for a pod or service address that no more specific route (a
// node's pods) or proxy rule takes is refused here instead of following
// the default route out.
func (c Config) blackholeRoutes() [][]string {
	return [][]string{
		{"unreachable", c.PodSubnet},
		{"unreachable", c.ServiceSubnet},
	}
}

// ensureAgentNetwork makes whatever of the agents' network is missing: the
// host's bridge with HostIP, one namespace per agent with a veth on the
// bridge, and the routes. It is idempotent, for `make up` after a crash.
func ensureAgentNetwork(c Config) error {
	if err := c.validateNetwork(); err != nil {
		return err
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("the ip command is missing: run hack/install-deps.sh, or apt-get install iproute2")
	}
	recPath := networkRecordPath(c.StateDir)
	if _, err := os.Stat(recPath); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat("/sys/class/net/" + c.CNIBridge); err == nil {
			return fmt.Errorf("network interface %s exists but this cluster did not make it (another cluster's, or left by one): run `make down` there, or choose another name with K8SM_CNI_BRIDGE=<name>", c.CNIBridge)
		}
	}
	rec := networkRecord{Bridge: c.CNIBridge}
	for i := 1; i <= c.machines(); i++ {
		rec.Namespaces = append(rec.Namespaces, c.AgentNetNS(i))
	}
	rec.Routes = append(rec.Routes, c.blackholeRoutes()...)
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(recPath, b, 0o644); err != nil {
		return fmt.Errorf("recording the agents' network: %w", err)
	}

	prefixLen := strings.SplitN(c.HostSubnet, "/", 2)[1]
	if _, err := os.Stat("/sys/class/net/" + c.CNIBridge); err != nil {
		if err := ip([]string{"link", "add", c.CNIBridge, "type", "bridge"}); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"addr", "replace", c.HostIP() + "/" + prefixLen, "dev", c.CNIBridge},
		{"link", "set", c.CNIBridge, "up"},
	}
	for _, r := range c.blackholeRoutes() {
		steps = append(steps, append([]string{"route", "replace"}, r...))
	}
	if err := ip(steps...); err != nil {
		return err
	}
	for i := 1; i <= c.machines(); i++ {
		if err := c.ensureAgentNamespace(i, prefixLen); err != nil {
			return err
		}
	}
	return nil
}

// ensureAgentNamespace makes agent i's namespace: lo and eth0 (the veth to
// the host's bridge) up with AgentIP(i), forwarding on (its pods' traffic
// passes through it) and the blackholes. The routes to the other agents'
// pods are the executor's (executor/podnet), from the Nodes' pod CIDRs.
func (c Config) ensureAgentNamespace(i int, prefixLen string) error {
	ns := c.AgentNetNS(i)
	if _, err := os.Stat(netnsPath(ns)); err != nil {
		if err := ip([]string{"netns", "add", ns}); err != nil {
			return err
		}
	}
	veth := fmt.Sprintf("%sv%d", c.CNIBridge, i)
	if _, err := os.Stat("/sys/class/net/" + veth); err != nil {
		if err := ip([]string{"link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns}); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"link", "set", veth, "master", c.CNIBridge, "up"},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "addr", "replace", c.AgentIP(i) + "/" + prefixLen, "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, r := range c.blackholeRoutes() {
		steps = append(steps, append([]string{"-n", ns, "route", "replace"}, r...))
	}
	if err := ip(steps...); err != nil {
		return err
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1").CombinedOutput(); err != nil {
		return fmt.Errorf("turning on forwarding in %s: %v: %s", ns, err, out)
	}
	// Without br_netfilter a pod calling a Service whose chosen backend is
	// on its own agent's bridge gets no answer (the reply skips kube-proxy's
	// DNAT); kube-proxy only warns, so say it here.
	if out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1").CombinedOutput(); err != nil {
		return fmt.Errorf("letting iptables see bridged traffic in %s (is the br_netfilter module loaded? run `modprobe br_netfilter`): %v: %s", ns, err, out)
	}
	return nil
}

// removeAgentNetwork undoes ensureAgentNetwork from its record: the
// namespaces (their veths go with them), the bridge and the host routes.
func removeAgentNetwork(stateDir string) error {
	b, err := os.ReadFile(networkRecordPath(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var rec networkRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("reading %s: %w", networkRecordPath(stateDir), err)
	}
	var errs []error
	for _, r := range rec.Routes {
		// A route through a device that is gone went with it.
		_ = ip(append([]string{"route", "del"}, r...))
	}
	for _, ns := range rec.Namespaces {
		if _, err := os.Stat(netnsPath(ns)); err == nil {
			if err := ip([]string{"netns", "delete", ns}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if rec.Bridge != "" {
		if _, err := os.Stat("/sys/class/net/" + rec.Bridge); err == nil {
			if err := ip([]string{"link", "delete", rec.Bridge}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(networkRecordPath(stateDir))
	}
	return errors.Join(errs...)
}

// ip runs each step as `ip <args>`, stopping at the first that fails.
func ip(steps ...[]string) error {
	for _, args := range steps {
		klog.V(3).InfoS("Network", "ip", strings.Join(args, " "))
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// inNetNS prefixes argv so that it runs in network namespace ns (and only
// that: it keeps the host's mounts, which containerd shares with the
// kubelet).
func inNetNS(ns string, argv ...string) []string {
	if ns == "" {
		return argv
	}
	return append([]string{"nsenter", "--net=" + netnsPath(ns), "--"}, argv...)
}
