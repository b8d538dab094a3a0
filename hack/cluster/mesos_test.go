package cluster

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestAgentsGetDisjointHostPortsAndAddresses(t *testing.T) {
	c := Config{Agents: 2, AgentPortsBegin: 31000, AgentPortsEnd: 31999}
	b1, e1 := c.AgentHostPorts(1)
	b2, e2 := c.AgentHostPorts(2)
	if b1 != 31000 || e1 != 31499 || b2 != 31500 || e2 != 31999 {
		t.Errorf("host ports: agent 1 %d-%d, agent 2 %d-%d; want 31000-31499 and 31500-31999", b1, e1, b2, e2)
	}
	// Each containerd of the cluster hands out addresses from its own /24
	// of the shared subnet, never the bridge's gateway (.1 of the first).
	seen := map[string]int{}
	for slot := 0; slot <= 2; slot++ {
		b, err := cniConfig(t.TempDir(), "k8smx", "10.88.0.0/16", slot)
		if err != nil {
			t.Fatal(err)
		}
		var conf struct {
			Plugins []struct {
				IPAM struct {
					Ranges [][]map[string]string `json:"ranges"`
				} `json:"ipam"`
			} `json:"plugins"`
		}
		if err := json.Unmarshal(b, &conf); err != nil {
			t.Fatal(err)
		}
		r := conf.Plugins[0].IPAM.Ranges[0][0]
		start, end := netip.MustParseAddr(r["rangeStart"]), netip.MustParseAddr(r["rangeEnd"])
		if r["subnet"] != "10.88.0.0/16" || start.As4()[2] != byte(slot) || end.As4()[2] != byte(slot) || start.As4()[3] < 2 {
			t.Errorf("slot %d: range %v", slot, r)
		}
		if prev, ok := seen[r["rangeStart"]]; ok {
			t.Errorf("slots %d and %d share %s", prev, slot, r["rangeStart"])
		}
		seen[r["rangeStart"]] = slot
	}
	if _, err := cniConfig(t.TempDir(), "k8smx", "10.88.0.0/24", 1); err == nil {
		t.Error("a /24 pod subnet cannot hold a /24 per containerd, yet was accepted")
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
