package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Config says where the local cluster lives and which loopback ports it
// takes. The zero value is not usable: start from DefaultConfig.
type Config struct {
	// StateDir holds every file the cluster writes: data, PKI, logs, pids.
	StateDir string
	// BinDir holds etcd, kube-apiserver, kube-controller-manager and kubectl
	// as `make build` leaves them.
	BinDir string

	EtcdPort              int
	EtcdPeerPort          int
	APIServerPort         int
	ControllerManagerPort int
	ZooKeeperPort         int

	// Containerd runs a containerd with its own root, state and socket
	// under StateDir (ContainerdSocket), for a control plane without agents
	// (Agents 0): with agents, each agent's containerd takes its place.
	// CNIBridge and PodSubnet must differ between clusters that run at the
	// same time on one host.
	Containerd bool
	CNIBridge  string
	PodSubnet  string
	// HostSubnet is the link between the host and the agents, each of which
	// has a network namespace of its own (a machine of its own): the host
	// is its first address, agent i its (10+i)th. CNIBridge is the host's
	// bridge of that link, and the namespaces are named after it.
	HostSubnet string
	// ServiceSubnet is the Services' ClusterIP range.
	ServiceSubnet string
	// NodePorts is the NodePort range: kube-proxy takes these on every
	// agent, so they must be outside the host ports Mesos offers.
	NodePortsBegin, NodePortsEnd int
	// ImageBinDir holds the static programs the local images are made of
	// (pause, webapp); empty means BinDir/images.
	ImageBinDir string

	// Agents is the number of Mesos agents. With one or more, Up runs the
	// Mesos side too: mesos-sim (a master registered in ZooKeeper and the
	// agents, each running the real k8sm-executor and kubelet against a
	// containerd of its own), the broker and the k8sm kube-scheduler. Zero
	// runs the control plane, ZooKeeper and containerd only.
	Agents int
	// StandbyAgents are machines made ready beside the agents (network
	// namespace, containerd, images) whose mesos-agent is not started:
	// mesos-sim's fault API starts one (POST /agents/{i}/start, i counting
	// on from Agents), so that a test can have an agent join the running
	// cluster. They are agents Agents+1 … Agents+StandbyAgents.
	StandbyAgents int
	// FailpointsDir is the broker's and the scheduler's --failpoints-dir
	// (pkg/failpoint): tests arm exact faults there. Empty turns them off.
	FailpointsDir string
	// AgentResources are the Mesos resources of every agent, without
	// ports: AgentPorts.
	AgentResources string
	// AgentPorts is the host port range every agent offers: each is a
	// host of its own, with all of it.
	AgentPortsBegin, AgentPortsEnd int

	MesosPort        int // the Mesos master
	MesosAgentPort   int // every agent's, at its own address
	MesosControlPort int // mesos-sim's fault-injection API
	KubeletPort      int // every agent's kubelet's, at its own address
	BrokerGRPCPort   int
	BrokerHTTPPort   int // the broker's /metrics, /healthz, /readyz
	// BrokerExecutorPort serves the executor binary the agents fetch.
	BrokerExecutorPort int
	SchedulerPort      int // the k8sm kube-scheduler's secure port
	SampleDeployment   bool
	// ClusterDNS deploys CoreDNS through k8sm behind the kube-dns Service
	// (DeployDNS). The kubelets point pods at DNSServiceIP either way.
	ClusterDNS bool
	// CgroupParent is the cgroup under which every agent keeps its
	// executors' containers (--cgroups_root <CgroupParent>/<node>), and
	// their kubelets the pods; empty means one derived from StateDir, so
	// that clusters on one host never share it.
	CgroupParent string
}

// DefaultConfig is the cluster of `make up`: the usual upstream ports, each
// of which an environment variable can move.
func DefaultConfig(repoRoot string) Config {
	c := Config{
		StateDir:              envString("K8SM_STATE_DIR", filepath.Join(repoRoot, "_output", "local")),
		BinDir:                envString("K8SM_BIN_DIR", filepath.Join(repoRoot, "_output", "bin")),
		EtcdPort:              envInt("K8SM_ETCD_PORT", 2379),
		EtcdPeerPort:          envInt("K8SM_ETCD_PEER_PORT", 2380),
		APIServerPort:         envInt("K8SM_APISERVER_PORT", 6443),
		ControllerManagerPort: envInt("K8SM_CONTROLLER_MANAGER_PORT", 10257),
		ZooKeeperPort:         envInt("K8SM_ZK_PORT", 2181),
		CNIBridge:             envString("K8SM_CNI_BRIDGE", "k8sm0"),
		PodSubnet:             envString("K8SM_POD_SUBNET", "10.88.0.0/16"),
		HostSubnet:            envString("K8SM_HOST_SUBNET", "10.87.0.0/24"),
		ServiceSubnet:         envString("K8SM_SERVICE_SUBNET", "10.96.0.0/24"),
		Agents:                envCount("K8SM_AGENTS", 2),
		AgentResources:        envString("K8SM_AGENT_RESOURCES", DefaultAgentResources),
		MesosPort:             envInt("K8SM_MESOS_PORT", 5050),
		MesosAgentPort:        envInt("K8SM_MESOS_AGENT_PORT", 5051),
		MesosControlPort:      envInt("K8SM_MESOS_CONTROL_PORT", 5040),
		KubeletPort:           envInt("K8SM_KUBELET_PORT", 10250),
		BrokerGRPCPort:        envInt("K8SM_BROKER_GRPC_PORT", 10350),
		BrokerHTTPPort:        envInt("K8SM_BROKER_HTTP_PORT", 10351),
		BrokerExecutorPort:    envInt("K8SM_BROKER_EXECUTOR_PORT", 10352),
		SchedulerPort:         envInt("K8SM_SCHEDULER_PORT", 10259),
		SampleDeployment:      true,
		ClusterDNS:            true,
	}
	c.AgentPortsBegin, c.AgentPortsEnd = envRange("K8SM_AGENT_HOST_PORTS", 31000, 31999)
	c.NodePortsBegin, c.NodePortsEnd = envRange("K8SM_NODE_PORTS", 30000, 30999)
	// The agents have containerds of their own; the shared one is for
	// running the control plane alone.
	c.Containerd = c.Agents == 0
	return c
}

// DefaultAgentResources fit this project's machines (2 cores, 24 GiB) twice
// over in memory; every agent's kubelet admits pods against the host's real
// capacity, so an agent must not claim more cpus than the host has.
const DefaultAgentResources = "cpus:2;mem:4096;disk:10240"

// TestConfig is the whole cluster `make up` runs (2 agents, broker,
// scheduler; no sample Deployment, no cluster DNS until DeployDNS) on ports
// nobody uses, under dir, with a bridge, subnets and host port range of its
// own, so that tests never collide with a user's `make up` nor with tests
// running at the same time. Set Agents to 0 for the control plane,
// ZooKeeper and containerd only.
func TestConfig(dir, binDir string) (Config, error) {
	n := rand.IntN(100)
	// Host ports for the agents' pods: 100 of 32000-33999 (picked at
	// random like the bridge), away from a user's `make up` (31000-31999).
	k := rand.IntN(20)
	cfg := Config{
		StateDir: dir, BinDir: binDir, Containerd: true,
		CNIBridge:       fmt.Sprintf("k8smt%d", n),
		PodSubnet:       fmt.Sprintf("10.%d.0.0/16", 120+n),
		HostSubnet:      fmt.Sprintf("172.20.%d.0/24", n),
		ServiceSubnet:   fmt.Sprintf("172.21.%d.0/24", n),
		Agents:          2,
		AgentResources:  DefaultAgentResources,
		AgentPortsBegin: 32000 + k*100,
		AgentPortsEnd:   32000 + k*100 + 99,
		// NodePorts are per agent namespace: every test cluster may use
		// the same ones, away from every cluster's Mesos ports.
		NodePortsBegin: 30000, NodePortsEnd: 30999,
	}
	ports := []*int{&cfg.EtcdPort, &cfg.EtcdPeerPort, &cfg.APIServerPort, &cfg.ControllerManagerPort, &cfg.ZooKeeperPort,
		&cfg.MesosPort, &cfg.MesosControlPort, &cfg.BrokerGRPCPort, &cfg.BrokerHTTPPort, &cfg.BrokerExecutorPort, &cfg.SchedulerPort}
	for _, p := range ports {
		port, err := FreePort()
		if err != nil {
			return Config{}, err
		}
		*p = port
	}
	// Agents and kubelets listen in namespaces of their own: their ports
	// are free there.
	cfg.MesosAgentPort, cfg.KubeletPort = 5051, 10250
	return cfg, nil
}

func (c Config) imageBinDir() string {
	if c.ImageBinDir != "" {
		return c.ImageBinDir
	}
	return filepath.Join(c.BinDir, "images")
}

// APIServerURL is where kubectl and the components reach the API server.
func (c Config) APIServerURL() string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.APIServerPort)
}

// agentAPIServerURL is where the agents reach the API server: the host's
// address on their link.
func (c Config) agentAPIServerURL() string {
	return fmt.Sprintf("https://%s:%d", c.HostIP(), c.APIServerPort)
}

// serviceIP is the first address of the service range: the in-cluster
// "kubernetes" Service, which the API server's certificate must name.
func (c Config) serviceIP() string {
	p, err := netip.ParsePrefix(c.ServiceSubnet)
	if err != nil {
		return ""
	}
	return p.Masked().Addr().Next().String()
}

// ZooKeeperAddr is the host:port of the ZooKeeper server.
func (c Config) ZooKeeperAddr() string { return fmt.Sprintf("127.0.0.1:%d", c.ZooKeeperPort) }

// PKI is the cluster's certificate authority and credentials.
func (c Config) PKI() PKI { return PKI{Dir: filepath.Join(c.StateDir, "pki")} }

// ContainerdSocket is the CRI endpoint path of the cluster's containerd.
func (c Config) ContainerdSocket() string {
	return filepath.Join(c.shortPath("containerd"), "containerd.sock")
}

// maxShortStateDir is the longest state directory used as it is in unix
// socket paths: the kubelet's and containerd's sockets add up to 60 bytes
// below it, and a socket path may not exceed 104 (containerd's check).
const maxShortStateDir = 40

// runDir is StateDir spelled short enough for the unix sockets below it: the
// state directory itself, or a link to it under /run/k8sm (test state dirs
// under t.TempDir() are long).
func (c Config) runDir() string {
	if len(c.StateDir) <= maxShortStateDir {
		return c.StateDir
	}
	sum := sha256.Sum256([]byte(c.StateDir))
	return "/run/k8sm/" + hex.EncodeToString(sum[:4])
}

// shortPath is rel below StateDir, spelled through runDir.
func (c Config) shortPath(rel ...string) string {
	return filepath.Join(append([]string{c.runDir()}, rel...)...)
}

// ensureRunDir makes runDir's link to StateDir when it is one.
func (c Config) ensureRunDir() error {
	rd := c.runDir()
	if rd == c.StateDir {
		return nil
	}
	if t, err := os.Readlink(rd); err == nil && t == c.StateDir {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(rd), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(rd), err)
	}
	_ = os.Remove(rd)
	if err := os.Symlink(c.StateDir, rd); err != nil {
		return fmt.Errorf("linking %s to the state dir (short socket paths): %w", rd, err)
	}
	return nil
}

// removeRunDir removes runDir's link, if it is one and still points here.
func (c Config) removeRunDir() {
	rd := c.runDir()
	if t, err := os.Readlink(rd); err == nil && t == c.StateDir {
		_ = os.Remove(rd)
		_ = os.Remove(filepath.Dir(rd)) // only when empty
	}
}

func (c Config) bin(name string) (string, error) {
	p := filepath.Join(c.BinDir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not built (%s missing): run `make build` first", name, p)
	}
	return p, nil
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envRange(name string, begin, end int) (int, int) {
	v := os.Getenv(name)
	if v == "" {
		return begin, end
	}
	b, e, ok := strings.Cut(v, "-")
	bn, err1 := strconv.Atoi(b)
	en, err2 := strconv.Atoi(e)
	if !ok || err1 != nil || err2 != nil || bn <= 0 || en > 65535 || en < bn {
		fmt.Fprintf(os.Stderr, "%s=%q is not a port range such as 31000-31999\n", name, v)
		os.Exit(2)
	}
	return bn, en
}

func envCount(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 8 {
		fmt.Fprintf(os.Stderr, "%s=%q is not a number of agents (0-8)\n", name, v)
		os.Exit(2)
	}
	return n
}

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > 65535 {
		// A bad override must not silently fall back: exit with the reason.
		fmt.Fprintf(os.Stderr, "%s=%q is not a port number (1-65535)\n", name, v)
		os.Exit(2)
	}
	return n
}
