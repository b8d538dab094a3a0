package cluster

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
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
	// under StateDir; CNIBridge and PodSubnet must differ between clusters
	// that run at the same time on one host.
	Containerd bool
	CNIBridge  string
	PodSubnet  string
	// ImageBinDir holds the static programs the local images are made of
	// (pause, webapp); empty means BinDir/images.
	ImageBinDir string
}

// DefaultConfig is the cluster of `make up`: the usual upstream ports, each
// of which an environment variable can move.
func DefaultConfig(repoRoot string) Config {
	return Config{
		StateDir:              envString("K8SM_STATE_DIR", filepath.Join(repoRoot, "_output", "local")),
		BinDir:                envString("K8SM_BIN_DIR", filepath.Join(repoRoot, "_output", "bin")),
		EtcdPort:              envInt("K8SM_ETCD_PORT", 2379),
		EtcdPeerPort:          envInt("K8SM_ETCD_PEER_PORT", 2380),
		APIServerPort:         envInt("K8SM_APISERVER_PORT", 6443),
		ControllerManagerPort: envInt("K8SM_CONTROLLER_MANAGER_PORT", 10257),
		ZooKeeperPort:         envInt("K8SM_ZK_PORT", 2181),
		Containerd:            true,
		CNIBridge:             envString("K8SM_CNI_BRIDGE", "k8sm0"),
		PodSubnet:             envString("K8SM_POD_SUBNET", "10.88.0.0/16"),
	}
}

// TestConfig is a cluster on ports nobody uses, under dir, with a CNI bridge
// and pod subnet of its own, so that tests never collide with a user's
// `make up` nor with tests running at the same time.
func TestConfig(dir, binDir string) (Config, error) {
	n := rand.IntN(100)
	cfg := Config{
		StateDir: dir, BinDir: binDir, Containerd: true,
		CNIBridge: fmt.Sprintf("k8smt%d", n),
		PodSubnet: fmt.Sprintf("10.%d.0.0/16", 120+n),
	}
	for _, p := range []*int{&cfg.EtcdPort, &cfg.EtcdPeerPort, &cfg.APIServerPort, &cfg.ControllerManagerPort, &cfg.ZooKeeperPort} {
		port, err := FreePort()
		if err != nil {
			return Config{}, err
		}
		*p = port
	}
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

// ZooKeeperAddr is the host:port of the ZooKeeper server.
func (c Config) ZooKeeperAddr() string { return fmt.Sprintf("127.0.0.1:%d", c.ZooKeeperPort) }

// PKI is the cluster's certificate authority and credentials.
func (c Config) PKI() PKI { return PKI{Dir: filepath.Join(c.StateDir, "pki")} }

// ContainerdSocket is the CRI endpoint path of the cluster's containerd.
func (c Config) ContainerdSocket() string {
	return filepath.Join(c.StateDir, "containerd", "containerd.sock")
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
