package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/k8sm/k8sm/pkg/rolepolicy"
)

func TestAgentsAreHostsOfTheirOwn(t *testing.T) {
	c := Config{Agents: 2, AgentPortsBegin: 31000, AgentPortsEnd: 31999, CNIBridge: "k8smx",
		HostSubnet: "10.87.0.0/24", PodSubnet: "10.88.0.0/16", ServiceSubnet: "10.96.0.0/24"}
	if err := c.validateNetwork(); err != nil {
		t.Fatal(err)
	}
	// Every agent offers the whole range: a host port is per host.
	for i := 1; i <= 2; i++ {
		if b, e := c.AgentHostPorts(i); b != 31000 || e != 31999 {
			t.Errorf("agent %d offers host ports %d-%d, want all of 31000-31999", i, b, e)
		}
	}
	if c.HostIP() != "10.87.0.1" || c.AgentIP(1) != "10.87.0.11" || c.AgentIP(2) != "10.87.0.12" {
		t.Errorf("addresses: host %s, agents %s %s", c.HostIP(), c.AgentIP(1), c.AgentIP(2))
	}
	if c.AgentNetNS(1) == c.AgentNetNS(2) || !strings.HasPrefix(c.AgentNetNS(1), "k8smx") {
		t.Errorf("namespaces %q %q: want one per agent, named after the cluster's bridge", c.AgentNetNS(1), c.AgentNetNS(2))
	}
	if c.serviceIP() != "10.96.0.1" {
		t.Errorf("kubernetes Service IP %s, want 10.96.0.1", c.serviceIP())
	}
	// An agent's containerd renders its pods' network from the Node's pod
	// CIDR (the kubelet hands it over); it does not masquerade them.
	// The control plane's own containerd has a fixed subnet.
	for _, n := range []podNetwork{{bridge: agentBridge, fromNode: true}, {bridge: "k8smx", subnet: "10.88.0.0/24", masquerade: true}} {
		b, err := cniConfig(t.TempDir(), n)
		if err != nil {
			t.Fatal(err)
		}
		var conf struct {
			Plugins []struct {
				IPMasq bool `json:"ipMasq"`
				IPAM   struct {
					Ranges [][]map[string]string `json:"ranges"`
				} `json:"ipam"`
			} `json:"plugins"`
		}
		if err := json.Unmarshal(b, &conf); err != nil {
			t.Fatal(err)
		}
		want := n.subnet
		if n.fromNode {
			want = "{{.PodCIDR}}"
		}
		if r := conf.Plugins[0].IPAM.Ranges[0][0]; r["subnet"] != want {
			t.Errorf("%+v: range %v, want subnet %s", n, r, want)
		}
		if conf.Plugins[0].IPMasq != n.masquerade {
			t.Errorf("%+v: ipMasq %v", n, conf.Plugins[0].IPMasq)
		}
	}
	if _, err := cniConfig(t.TempDir(), podNetwork{bridge: "x", subnet: "10.88.0.0/25"}); err == nil {
		t.Error("a /25 pod subnet was accepted")
	}
	if cfg := containerdConfig("/d", "/s", "/d/cni/template.conflist"); !strings.Contains(cfg, `conf_template = "/d/cni/template.conflist"`) {
		t.Errorf("containerd config without the CNI template:\n%s", cfg)
	}
	bad := c
	bad.ServiceSubnet = "10.88.200.0/24"
	if err := bad.validateNetwork(); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("a service subnet inside the pod subnet: %v, want an overlap error", err)
	}
	// kube-proxy takes every NodePort on every agent: a pod given one as
	// its host port by Mesos could not bind it.
	bad = c
	bad.NodePortsBegin, bad.NodePortsEnd = 31500, 32500
	if err := bad.validateNetwork(); err == nil || !strings.Contains(err.Error(), "K8SM_NODE_PORTS") {
		t.Errorf("NodePorts 31500-32500 beside agent ports %d-%d: %v, want an error naming K8SM_NODE_PORTS", c.AgentPortsBegin, c.AgentPortsEnd, err)
	}
}

func TestSystemReservedLeavesTheAgentsResources(t *testing.T) {
	total := memTotalKiB()
	if total == 0 {
		t.Skip("no /proc/meminfo")
	}
	got := systemReserved("cpus:0.5;mem:1024;disk:100")
	var memKi int64
	for _, kv := range strings.Split(got, ",") {
		if v, ok := strings.CutPrefix(kv, "memory="); ok {
			if _, err := fmt.Sscan(strings.TrimSuffix(v, "Ki"), &memKi); err != nil {
				t.Fatal(err)
			}
		}
	}
	if total-memKi != 1024*1024 {
		t.Errorf("system-reserved %q leaves %d KiB allocatable, want the agent's 1048576", got, total-memKi)
	}
	if !strings.Contains(got, "cpu=") {
		t.Errorf("system-reserved %q keeps no cpu, though the agent has 0.5", got)
	}
}

func TestSchedulerConfigPointsAtTheLocalBroker(t *testing.T) {
	c := Config{StateDir: t.TempDir(), BrokerGRPCPort: 12345}
	path, err := c.writeSchedulerConfig("/x/scheduler.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		ClientConnection struct{ Kubeconfig string } `json:"clientConnection"`
		LeaderElection   struct{ LeaderElect bool }  `json:"leaderElection"`
		Profiles         []struct {
			SchedulerName string `json:"schedulerName"`
			PluginConfig  []struct {
				Name string
				Args map[string]any
			} `json:"pluginConfig"`
		}
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.ClientConnection.Kubeconfig != "/x/scheduler.kubeconfig" || !cfg.LeaderElection.LeaderElect {
		t.Errorf("config %s: kubeconfig %q, leader election %v", path, cfg.ClientConnection.Kubeconfig, cfg.LeaderElection.LeaderElect)
	}
	if len(cfg.Profiles) != 1 || cfg.Profiles[0].SchedulerName != "mesos-scheduler" {
		t.Fatalf("profiles %+v", cfg.Profiles)
	}
	for _, pc := range cfg.Profiles[0].PluginConfig {
		if pc.Name == "MesosOffers" {
			if addrs, _ := pc.Args["brokerAddresses"].([]any); len(addrs) != 1 || addrs[0] != "127.0.0.1:12345" {
				t.Errorf("brokerAddresses %v", pc.Args["brokerAddresses"])
			}
			// The broker's --role-policy-file is this same file.
			if want := filepath.Join(c.StateDir, "role-policy.yaml"); pc.Args["rolePolicyFile"] != want {
				t.Errorf("rolePolicyFile %v, want %s", pc.Args["rolePolicyFile"], want)
			} else if _, err := rolepolicy.Load(want); err != nil {
				t.Errorf("the local cluster's role policy: %v", err)
			}
			return
		}
	}
	t.Error("no MesosOffers plugin config")
}

func TestLongStateDirsGetShortSocketPaths(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("x", 60), "state")
	c := Config{StateDir: long, Agents: 2}
	for _, p := range []string{c.ContainerdSocket() + ".ttrpc", c.AgentContainerdSocket(2) + ".ttrpc",
		filepath.Join(c.AgentKubeletRootDir(2), "pod-resources", "kubelet.sock")} {
		if len(p) > 104 {
			t.Errorf("socket path %s is %d bytes, over the 104 containerd accepts", p, len(p))
		}
	}
	short := Config{StateDir: "/work/main/_output/local"}
	if short.AgentContainerdSocket(1) != "/work/main/_output/local/a1/containerd/containerd.sock" {
		t.Errorf("a short state dir is spelled as it is: %s", short.AgentContainerdSocket(1))
	}
}

func TestRemoveEmptyDirsKeepsWhatHoldsSomething(t *testing.T) {
	root := t.TempDir()
	empty, full := filepath.Join(root, "a", "empty"), filepath.Join(root, "b", "full")
	for _, d := range []string{empty, full} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(full, "sock"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	removeEmptyDirs(empty, filepath.Join(root, "a"), full, filepath.Join(root, "b"), filepath.Join(root, "missing"))
	if _, err := os.Stat(filepath.Join(root, "a")); !os.IsNotExist(err) {
		t.Errorf("empty directories were kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(full, "sock")); err != nil {
		t.Errorf("a directory holding a file was removed: %v", err)
	}
}
