package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PauseImage is the sandbox image the local containerd is configured with;
// there is no registry, so it is built here (see images.go).
const PauseImage = "k8sm.local/pause:latest"

// containerdConfig is a containerd 1.6 (config version 2) configuration
// whose every path lives under dir, so that several clusters and `down`
// never touch /var/lib/containerd. Two settings are forced by these hosts:
// root lacks CAP_SYS_RESOURCE, so the CRI plugin must not ask for a negative
// oom_score_adj (restrict_oom_score_adj), and cgroups are v1 without
// systemd, so runc uses the cgroupfs driver.
//
// Its sockets are in sockDir: the same directory as dir, spelled short
// enough for a unix socket path (Config.runDir).
//
// With confTemplate, the CNI configuration is made by containerd from that
// template once the kubelet hands it the Node's pod CIDR.
func containerdConfig(dir, sockDir, confTemplate string) string {
	tmpl := ""
	if confTemplate != "" {
		tmpl = fmt.Sprintf("    conf_template = %q\n", confTemplate)
	}
	return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  restrict_oom_score_adj = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[7]q
%[8]s`,
		filepath.Join(dir, "root"),
		filepath.Join(dir, "state"),
		filepath.Join(sockDir, "containerd.sock"),
		filepath.Join(sockDir, "containerd.sock.ttrpc"),
		filepath.Join(dir, "opt"),
		PauseImage,
		filepath.Join(dir, "cni", "net.d"),
		tmpl,
	)
}

// podNetwork is where a containerd runs and how its pods are connected:
// in network namespace netns (empty: the host's), on bridge, with
// addresses of subnet (a /24: .1 is the bridge, the gateway).
type podNetwork struct {
	netns, bridge, subnet string
	// fromNode leaves subnet to the Node's pod CIDR: the kubelet hands it
	// to containerd, which renders the CNI configuration from a template.
	fromNode bool
	// masquerade the pods' traffic to anything outside subnet: for the
	// control plane's containerd, whose pods nothing routes to. Agents'
	// pods keep their addresses: every agent and the host route to them.
	masquerade bool
}

// cniNetworkName is the CNI network of the pods on bridge: the plugins
// name it in the nat rules they make (cnirules.go).
func cniNetworkName(bridge string) string { return "k8sm-" + bridge }

// cniConfig gives pods addresses of the network's subnet on its bridge and
// host ports through portmap.
func cniConfig(dir string, n podNetwork) ([]byte, error) {
	// host-local's defaults: the whole subnet but .0 and the bridge's
	// gateway, .1.
	rng := map[string]string{"subnet": "{{.PodCIDR}}"}
	if !n.fromNode {
		pfx, err := netip.ParsePrefix(n.subnet)
		if err != nil || !pfx.Addr().Is4() || pfx.Bits() > 24 {
			return nil, fmt.Errorf("pods' subnet %q: want an IPv4 CIDR of /24 or larger", n.subnet)
		}
		rng = map[string]string{"subnet": pfx.Masked().String()}
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       cniNetworkName(n.bridge),
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      n.bridge,
				"isGateway":   true,
				"ipMasq":      n.masquerade,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{rng}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": filepath.Join(dir, "cni", "ipam"),
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

func startContainerd(ctx context.Context, c Config) (*Process, error) {
	pfx, err := netip.ParsePrefix(c.PodSubnet)
	if err != nil {
		return nil, fmt.Errorf("pod subnet %q: %w", c.PodSubnet, err)
	}
	return startContainerdIn(ctx, c, "containerd", filepath.Join(c.StateDir, "containerd"), filepath.Dir(c.ContainerdSocket()),
		podNetwork{bridge: c.CNIBridge, subnet: netip.PrefixFrom(pfx.Masked().Addr(), 24).String(), masquerade: true})
}

// startContainerdIn runs a containerd named name whose every file is under
// dir, its pods on network n.
func startContainerdIn(ctx context.Context, c Config, name, dir, sockDir string, n podNetwork) (*Process, error) {
	bin, err := lookPath("containerd", "run hack/install-deps.sh, or apt-get install containerd runc containernetworking-plugins")
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat("/usr/sbin/runc"); err != nil {
		return nil, fmt.Errorf("runc is not installed (/usr/sbin/runc missing): run hack/install-deps.sh, or apt-get install runc")
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		return nil, fmt.Errorf("CNI plugins are not installed (/usr/lib/cni/bridge missing): run hack/install-deps.sh, or apt-get install containernetworking-plugins")
	}
	if err := os.MkdirAll(filepath.Join(dir, "cni", "net.d"), 0o755); err != nil {
		return nil, fmt.Errorf("creating containerd dirs: %w", err)
	}
	if n.netns == "" {
		if owner := bridgeOwner(n.bridge, c.StateDir); owner != "" {
			return nil, fmt.Errorf("CNI bridge %s is in use by another cluster (%s): run `make down` there, or choose another bridge with K8SM_CNI_BRIDGE=<name> and K8SM_POD_SUBNET=<cidr>", n.bridge, owner)
		}
	}
	cni, err := cniConfig(dir, n)
	if err != nil {
		return nil, err
	}
	cniPath, tmpl := filepath.Join(dir, "cni", "net.d", "10-k8sm.conflist"), ""
	if n.fromNode {
		cniPath = filepath.Join(dir, "cni", "template.conflist")
		tmpl = cniPath
	}
	if err := os.WriteFile(cniPath, cni, 0o644); err != nil {
		return nil, fmt.Errorf("writing CNI config: %w", err)
	}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(containerdConfig(dir, sockDir, tmpl)), 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", cfgPath, err)
	}
	// A bridge on the host is down's to remove; one in an agent's
	// namespace goes with the namespace.
	if n.netns == "" {
		if err := os.WriteFile(filepath.Join(dir, "bridge"), []byte(n.bridge+"\n"), 0o644); err != nil {
			return nil, fmt.Errorf("recording CNI bridge: %w", err)
		}
	}
	p, err := startProcess(name, c.StateDir, nil, inNetNS(n.netns, bin, "--config", cfgPath, "--log-level", "warn")...)
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(sockDir, "containerd.sock")
	if err := waitHealthy(ctx, p, time.Minute, func(ctx context.Context) error { return criReady(ctx, sock) }); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// criReady asks the CRI plugin itself, not just containerd: the plugin can
// fail to load (bad config) while containerd happily serves its socket.
func criReady(ctx context.Context, sock string) error {
	if _, err := os.Stat(sock); err != nil {
		return fmt.Errorf("%w: no socket yet", errNotReady)
	}
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	return err
}

// removeSandboxes stops and removes every CRI pod sandbox, which tears down
// their network namespaces, veths and CNI iptables rules through CNI DEL.
// A sandbox still being made at one listing (its RunPodSandbox was in
// flight) is in the next: it lists again until none is left, three times
// at most. What is made after that, podnetns.go cleans once containerd is
// stopped.
func removeSandboxes(ctx context.Context, sock string) error {
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	var errs []string
	for range 3 {
		list, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			return fmt.Errorf("listing pod sandboxes: %w", err)
		}
		if len(list.Items) == 0 {
			return nil
		}
		errs = nil
		for _, sb := range list.Items {
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
				errs = append(errs, fmt.Sprintf("stopping %s: %v", sb.Id, err))
				continue
			}
			if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
				errs = append(errs, fmt.Sprintf("removing %s: %v", sb.Id, err))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing pod sandboxes: %s", strings.Join(errs, "; "))
	}
	return nil
}

// importImage loads a docker-archive tarball into the CRI namespace.
func importImage(ctx context.Context, sock, tarball string) error {
	out, err := exec.CommandContext(ctx, "ctr", "--address", sock, "--namespace", "k8s.io", "images", "import", "--no-unpack=false", tarball).CombinedOutput()
	if err != nil {
		return fmt.Errorf("importing %s into containerd: %v: %s", tarball, err, out)
	}
	return nil
}

// bridgeOwner names the other state directory whose containerd uses bridge,
// or "" when none does. Two clusters on one bridge would hand out the same
// pod addresses.
func bridgeOwner(bridge, self string) string {
	if _, err := os.Stat("/sys/class/net/" + bridge); err != nil {
		return ""
	}
	// The bridge outlives a crashed containerd; it is only a conflict if a
	// live containerd of another state directory uses it.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) < 3 || filepath.Base(args[0]) != "containerd" || args[1] != "--config" {
			continue
		}
		dir := filepath.Dir(args[2])
		if strings.HasPrefix(dir, self+string(filepath.Separator)) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "bridge")); err == nil && strings.TrimSpace(string(b)) == bridge {
			return filepath.Dir(dir)
		}
	}
	return ""
}
