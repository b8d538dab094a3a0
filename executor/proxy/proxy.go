// Package proxy runs the stock kube-proxy of the pinned release
// (k8s.io/kubernetes/cmd/kube-proxy/app) beside the executor's kubelet, as
// the original k8sm did: every agent that runs pods makes Services work for
// them, with the node's own identity. Its configuration is a
// KubeProxyConfiguration file, as a kube-proxy DaemonSet would mount.
//
// kube-proxy runs as a child process of the executor (the executor's own
// binary, `k8sm-executor kube-proxy`, as hyperkube did): the stock proxy
// server cannot be stopped in-process (its informers and sync loop run
// until the process ends, and would put back rules removed beside them),
// and its feature gates and flags are process-wide and would mix with the
// embedded kubelet's. A child stops with a signal; then its rules are
// removed.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/component-base/cli"
	"k8s.io/klog/v2"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
	"k8s.io/kubernetes/pkg/proxy/iptables"
	"k8s.io/kubernetes/pkg/proxy/nftables"
	"sigs.k8s.io/yaml"
)

// Command is the first argument that makes k8sm-executor run kube-proxy.
const Command = "kube-proxy"

// Modes are the proxy modes the executor runs, and the command each needs
// on the host.
var Modes = map[string]string{"iptables": "iptables-restore", "nftables": "nft"}

// Config is what the executor decides about its kube-proxy.
type Config struct {
	// Mode is iptables or nftables.
	Mode string
	// Kubeconfig authenticates as the node (system:node:<node>); the
	// cluster grants the nodes' group what kube-proxy reads beyond what the
	// Node authorizer allows (manifests/node-rbac.yaml).
	Kubeconfig string
	// NodeName is the Node this proxy serves (its topology, its local
	// endpoints); NodeIP its address (health checks, NodePorts).
	NodeName, NodeIP string
	// ClusterCIDR is every pod's range: traffic from outside it to a
	// Service is masqueraded.
	ClusterCIDR string
	// Dir holds the configuration file.
	Dir string
}

// Validate says what is wrong with c and what to do.
func (c Config) Validate(lookPath func(string) (string, error)) error {
	tool, ok := Modes[c.Mode]
	if !ok {
		return fmt.Errorf("--proxy-mode=%q: want iptables or nftables, or empty for no kube-proxy", c.Mode)
	}
	if _, err := lookPath(tool); err != nil {
		return fmt.Errorf("--proxy-mode=%s needs %s on the host (Debian: apt-get install %s): %w", c.Mode, tool, map[string]string{"iptables": "iptables", "nftables": "nftables"}[c.Mode], err)
	}
	return nil
}

// File is the KubeProxyConfiguration's path.
func (c Config) File() string { return filepath.Join(c.Dir, "kube-proxy.yaml") }

// configuration is the KubeProxyConfiguration. Conntrack limits and
// timeouts are left as the host has them (zero): they are host-wide
// settings, not this node's to change.
func (c Config) configuration() ([]byte, error) {
	cfg := map[string]any{
		"apiVersion":       "kubeproxy.config.k8s.io/v1alpha1",
		"kind":             "KubeProxyConfiguration",
		"mode":             c.Mode,
		"clientConnection": map[string]any{"kubeconfig": c.Kubeconfig},
		"hostnameOverride": c.NodeName,
		"clusterCIDR":      c.ClusterCIDR,
		// NodePorts on the node's own address only, never on loopback
		// (which would need route_localnet).
		"nodePortAddresses":  []string{"primary"},
		"metricsBindAddress": "127.0.0.1:10249",
		"conntrack": map[string]any{
			"maxPerCore": 0, "min": 0,
			"tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
			"udpTimeout": "0s", "udpStreamTimeout": "0s",
		},
	}
	if c.NodeIP != "" {
		cfg["healthzBindAddress"] = c.NodeIP + ":10256"
	}
	return yaml.Marshal(cfg)
}

// write writes the configuration file.
func (c Config) write() error {
	b, err := c.configuration()
	if err != nil {
		return fmt.Errorf("encoding the kube-proxy configuration: %w", err)
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", c.Dir, err)
	}
	if err := os.WriteFile(c.File(), b, 0o644); err != nil {
		return fmt.Errorf("writing the kube-proxy configuration: %w", err)
	}
	return nil
}

// Main is `k8sm-executor kube-proxy ARGS`: the stock kube-proxy command,
// as its own main runs it. It returns the exit code.
func Main(args []string) int {
	cmd := proxyapp.NewProxyCommand()
	cmd.SetArgs(args)
	return cli.Run(cmd)
}

// Proxy is a running kube-proxy child.
type Proxy struct {
	cfg    Config
	binary string
	cancel context.CancelFunc
	done   chan struct{}
}

// Start writes the configuration and runs binary (this executor's own:
// "/proc/self/exe") as kube-proxy until Stop, restarting it with a backoff
// when it ends on its own, as a kubelet restarts a kube-proxy pod.
func Start(ctx context.Context, c Config, binary string) (*Proxy, error) {
	if err := c.write(); err != nil {
		return nil, err
	}
	// Before kube-proxy can make a rule: a kill of this executor leaves
	// the record for the next one.
	if err := os.WriteFile(ownerFile(c.Dir), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("recording the kube-proxy's executor: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	p := &Proxy{cfg: c, binary: binary, cancel: cancel, done: make(chan struct{})}
	go p.loop(ctx)
	return p, nil
}

func (p *Proxy) loop(ctx context.Context) {
	defer close(p.done)
	logger := klog.FromContext(ctx).WithName("kube-proxy")
	// From 1 s doubling to 30 s; a run that lasted starts it over.
	restarts := func() wait.Backoff {
		return wait.Backoff{Duration: time.Second, Factor: 2, Cap: 30 * time.Second, Steps: 1 << 30}
	}
	backoff := restarts()
	for {
		started := time.Now()
		err := p.runOnce(ctx, logger)
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			backoff = restarts()
		}
		d := backoff.Step()
		logger.Error(err, "kube-proxy ended; starting it again", "after", d)
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

// runOnce runs the child until it ends or ctx does (then SIGTERM, which
// ends kube-proxy at once: it keeps no state but its rules).
func (p *Proxy) runOnce(ctx context.Context, logger klog.Logger) error {
	cmd := exec.Command(p.binary, Command, "--config="+p.cfg.File())
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Killed with the executor, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-proxy: %w", err)
	}
	logger.Info("Started kube-proxy", "pid", cmd.Process.Pid, "mode", p.cfg.Mode, "config", p.cfg.File())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		return fmt.Errorf("kube-proxy exited: %w", err)
	case <-ctx.Done():
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		return nil
	}
}

// Stop ends kube-proxy and waits for it; its rules stay (an in-place
// restart keeps Services working until the next kube-proxy takes over).
func (p *Proxy) Stop() {
	p.cancel()
	<-p.done
}

// StopAndCleanup ends kube-proxy and removes its rules, as `kube-proxy
// --cleanup` does for its mode.
func (p *Proxy) StopAndCleanup(ctx context.Context) error {
	p.Stop()
	if err := Cleanup(ctx, p.cfg.Mode); err != nil {
		return err
	}
	if err := os.Remove(ownerFile(p.cfg.Dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the record of kube-proxy's rules: %w", err)
	}
	return nil
}

// cleanups remove every rule kube-proxy makes in a mode; each reports
// whether it failed (and logs why). Each does nothing where its tool is
// missing or it made nothing.
var cleanups = map[string]func(context.Context) bool{
	"iptables": iptables.CleanupLeftovers,
	"nftables": nftables.CleanupLeftovers,
}

// Cleanup removes every rule kube-proxy makes in mode.
func Cleanup(ctx context.Context, mode string) error {
	clean, ok := cleanups[mode]
	if !ok {
		return fmt.Errorf("no kube-proxy mode %q", mode)
	}
	if clean(ctx) {
		return errors.New("removing kube-proxy's " + mode + " rules failed (see the log above)")
	}
	return nil
}

// ownerFile holds the pid of the executor whose kube-proxy has rules on
// this host (dir is Config.Dir, which is on the host, not in a sandbox):
// written before kube-proxy starts, removed once its rules are.
func ownerFile(dir string) string { return filepath.Join(dir, "rules-owner") }

// RemoveLeftovers removes the rules that the kube-proxy of an earlier
// executor on this host left when that executor was killed (SIGKILL: its
// kube-proxy dies with it and removes nothing), so that no Service is sent
// to pods that are gone while no kube-proxy, or one of another mode, runs.
// It removes every mode's rules, as `kube-proxy --cleanup` does: the mode
// may have changed since. self is the calling executor's pid: an executor
// restarted in place keeps it, and its rules, which serve its pods until
// its new kube-proxy takes over. Without a record it does nothing.
func RemoveLeftovers(ctx context.Context, dir string, self int) error {
	b, err := os.ReadFile(ownerFile(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading the record of kube-proxy's rules: %w", err)
	}
	owner := strings.TrimSpace(string(b))
	if owner == strconv.Itoa(self) {
		return nil
	}
	klog.FromContext(ctx).Info("Removing the Service rules left by the kube-proxy of a killed executor", "executorPID", owner, "record", ownerFile(dir))
	var failed []string
	for _, mode := range []string{"iptables", "nftables"} {
		if cleanups[mode](ctx) {
			failed = append(failed, mode)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("removing the %v rules a killed executor's kube-proxy left failed (see the log above); %s stays until they are removed", failed, ownerFile(dir))
	}
	if err := os.Remove(ownerFile(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing the record of kube-proxy's rules: %w", err)
	}
	return nil
}
