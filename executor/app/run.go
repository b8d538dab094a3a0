package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/executor"
	"github.com/k8sm/k8sm/executor/agentconn"
	"github.com/k8sm/k8sm/executor/hairpin"
	"github.com/k8sm/k8sm/executor/kernel"
	"github.com/k8sm/k8sm/executor/kubelet"
	"github.com/k8sm/k8sm/executor/podnet"
	"github.com/k8sm/k8sm/executor/proxy"
	"github.com/k8sm/k8sm/pkg/mounts"
)

// host is what the executor changes on its host besides its pods, and
// gives back on its final exit.
type host interface {
	// SaveTunables returns the host's own kernel settings, kept where a
	// later executor finds them if this one is killed (kernel.Defaults).
	SaveTunables(logger klog.Logger) (map[string]string, error)
	RestoreTunables(logger klog.Logger, saved map[string]string)
	// UnmountUnder removes the kubelet's mounts under dir.
	UnmountUnder(dir string) error
	// RemoveProxyLeftovers removes the rules of a killed executor's
	// kube-proxy, recorded in dir (proxy.RemoveLeftovers).
	RemoveProxyLeftovers(ctx context.Context, dir string) error
	Sleep(d time.Duration)
}

type realHost struct{ kernel kernel.Defaults }

func (h realHost) SaveTunables(logger klog.Logger) (map[string]string, error) {
	return h.kernel.Record(logger)
}
func (h realHost) RestoreTunables(logger klog.Logger, saved map[string]string) {
	h.kernel.Restore(logger, saved)
}
func (realHost) UnmountUnder(dir string) error { return mounts.UnmountUnder(dir) }
func (realHost) Sleep(d time.Duration)         { time.Sleep(d) }
func (realHost) RemoveProxyLeftovers(ctx context.Context, dir string) error {
	return proxy.RemoveLeftovers(ctx, dir, os.Getpid())
}

// execProcess replaces this process, keeping its pid.
func execProcess(argv0 string, argv, env []string) error { return syscall.Exec(argv0, argv, env) }

// Run runs the executor and its embedded kubelet until ctx ends, the agent
// shuts it down or is gone, or restart receives (an in-place restart, which
// returns executor.ErrRestart and leaves the pods and the host to the next
// process). On any other end it leaves the host as it found it.
func (c *Config) Run(ctx context.Context, restart <-chan struct{}) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	o := c.Options
	// Whether or not this executor runs a kube-proxy: Services must not
	// be sent to a killed executor's pods by its kube-proxy's rules. The
	// next kube-proxy would replace them only once it synced, and one of
	// another mode never.
	if err := c.host.RemoveProxyLeftovers(ctx, o.proxyConfig().Dir); err != nil {
		klog.FromContext(ctx).Error(err, "Removing the rules of a killed executor's kube-proxy")
	}
	if o.PodNetwork == "host-gw" {
		// Its own context: the routes stay while the executor stops its
		// pods, go after, and stay through an in-place restart.
		pctx, pcancel := context.WithCancel(klog.NewContext(context.Background(), klog.FromContext(ctx)))
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := podnet.Run(pctx, c.Client, podnet.Config{NodeName: o.NodeName, NodeIP: o.NodeIP, ClusterCIDR: o.ClusterCIDR}); err != nil {
				cancel(fmt.Errorf("pod network: %w", err))
			}
		}()
		defer func() {
			if !errors.Is(context.Cause(ctx), executor.ErrRestart) {
				pcancel()
				<-done
			}
		}()
	}
	tunables, err := c.host.SaveTunables(klog.FromContext(ctx))
	if err != nil {
		return err
	}
	if o.CgroupRoot == "" && c.Runtime != nil {
		c.removeLeftBehind(ctx, kubelet.ContainerCgroup())
	}
	kl := kubelet.New(kubelet.Config{
		Kubeconfig: o.Kubeconfig, ContainerRuntimeEndpoint: o.RuntimeEndpoint, RootDir: o.RootDir,
		CgroupRoot: o.CgroupRoot, Port: o.KubeletPort, Address: o.KubeletAddress,
		TLSCertFile: o.TLSCertFile, TLSKeyFile: o.TLSKeyFile, ClientCAFile: o.ClientCAFile, NodeIP: o.NodeIP,
		NodeLabels: o.NodeLabels, RegisterWithTaints: c.Taints, SystemReserved: o.SystemReserved,
		ClusterDNS: o.ClusterDNS, ClusterDomain: o.ClusterDomain,
		ProtectKernelDefaults: o.ProtectKernelDefaults,
		Fatal:                 func(err error) { cancel(fmt.Errorf("kubelet failed: %w", err)) },
	})
	var k executor.Kubelet = kl
	if o.ProxyMode != "" && o.NodeIP != "" {
		// kube-proxy cannot take a pod to a host-private endpoint on this
		// very agent (hostIP:hostPort); these relays do. They follow the
		// pods the kubelet is given and end with the executor.
		relays, err := hairpin.New(c.Client, o.NodeIP)
		if err != nil {
			return err
		}
		k = relays.Kubelet(k)
	}
	if o.ProxyMode != "" {
		pk := &proxiedKubelet{Kubelet: k, cfg: o.proxyConfig(), binary: selfBinary}
		k = pk
		// After the executor stopped its pods: their Services' rules go
		// last, and stay through an in-place restart.
		defer pk.stop(klog.NewContext(context.WithoutCancel(ctx), klog.FromContext(ctx)), func() bool {
			return errors.Is(context.Cause(ctx), executor.ErrRestart)
		})
	}
	run := c.runExecutor
	if run == nil {
		run = executor.Run
	}
	err = run(ctx, executor.Options{
		Env: c.Env, NodeName: o.NodeName, Client: c.Client, Kubelet: k, Runtime: c.Runtime,
		BindTimeout: o.BindTimeout, ImagePullTimeout: o.ImagePullTimeout, Restart: restart,
	})
	if errors.Is(err, executor.ErrRestart) {
		cancel(err)
		return err
	}
	c.leaveHost(klog.FromContext(ctx), kl.RemoveCgroups, tunables)
	if errors.Is(err, context.Canceled) && context.Cause(ctx) != nil {
		// Say why: a signal, or the kubelet's failure.
		err = fmt.Errorf("%w: %w", err, context.Cause(ctx))
	}
	return err
}

// removeLeftBehind removes from the runtime the sandboxes (and their
// containers) of pods that an earlier executor of this agent ran in a
// container the agent has since destroyed: nothing of them runs, but the
// runtime keeps their records, network namespaces and addresses until
// someone removes them, and this executor's kubelet never knew them.
func (c *Config) removeLeftBehind(ctx context.Context, own string) {
	if own == "" {
		return
	}
	logger := klog.FromContext(ctx)
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sbs, err := c.Runtime.Sandboxes(ctx)
	if err != nil {
		logger.Error(err, "Looking for pods an earlier executor left in the container runtime")
		return
	}
	parents := make([]string, len(sbs))
	for i, sb := range sbs {
		parents[i] = sb.CgroupParent
	}
	for i, left := range kubelet.LeftBehind(own, parents, kubelet.FreezerCgroupExists) {
		if !left {
			continue
		}
		sb := sbs[i]
		if err := c.Runtime.RemoveSandbox(ctx, sb.ID); err != nil {
			logger.Error(err, "Removing a pod sandbox an earlier executor left", "pod", klog.KRef(sb.Namespace, sb.Name), "uid", sb.UID)
			continue
		}
		logger.Info("Removed a pod sandbox an earlier executor left (its container was destroyed)", "pod", klog.KRef(sb.Namespace, sb.Name), "uid", sb.UID, "sandbox", sb.ID)
	}
}

// selfBinary is this process's program, even after an upgrade replaced
// the file: kube-proxy runs the same code as its executor.
const selfBinary = "/proc/self/exe"

// proxiedKubelet starts kube-proxy as the kubelet starts, once the node's
// name is known (by default the agent's hostname, from SUBSCRIBED).
type proxiedKubelet struct {
	executor.Kubelet
	cfg    proxy.Config
	binary string

	mu sync.Mutex
	p  *proxy.Proxy
}

func (k *proxiedKubelet) Start(ctx context.Context, node string, pods <-chan []*v1.Pod) error {
	cfg := k.cfg
	cfg.NodeName = node
	// Its own lifetime: stop ends it, after the pods.
	p, err := proxy.Start(context.WithoutCancel(ctx), cfg, k.binary)
	if err != nil {
		return fmt.Errorf("starting kube-proxy: %w", err)
	}
	k.mu.Lock()
	k.p = p
	k.mu.Unlock()
	return k.Kubelet.Start(ctx, node, pods)
}

// stop ends kube-proxy, and removes its rules unless keep says the
// executor restarts in place.
func (k *proxiedKubelet) stop(ctx context.Context, keep func() bool) {
	k.mu.Lock()
	p := k.p
	k.mu.Unlock()
	if p == nil {
		return
	}
	if keep() {
		p.Stop()
		return
	}
	if err := p.StopAndCleanup(ctx); err != nil {
		klog.FromContext(ctx).Error(err, "Removing kube-proxy's rules")
	}
}

// leaveHost undoes what the kubelet did to the host: its mounts, the pods'
// cgroups and the kernel settings it changed.
func (c *Config) leaveHost(logger klog.Logger, removeCgroups func() error, tunables map[string]string) {
	if err := c.host.UnmountUnder(c.Options.RootDir); err != nil {
		logger.Error(err, "Unmounting the kubelet's mounts")
	}
	// The kubelet's housekeeping removes the cgroups of stopped pods a
	// moment after their sandboxes: retry for a while.
	for i := 0; ; i++ {
		err := removeCgroups()
		if err == nil {
			break
		}
		if i == 20 {
			logger.Error(err, "Removing the pods' cgroups")
			break
		}
		c.host.Sleep(500 * time.Millisecond)
	}
	c.host.RestoreTunables(logger, tunables)
}

// reexec replaces this process by a new run of the (maybe upgraded) binary,
// with the same arguments and environment, keeping the pid, so that the
// agent sees its executor still alive. It returns only if that failed.
func (c *Config) reexec(logger klog.Logger, args, environ []string) error {
	bin := binary(args[0], exec.LookPath)
	logger.Info("Restarting the executor in place", "binary", bin)
	klog.Flush()
	if err := c.exec(bin, args, environ); err != nil {
		return fmt.Errorf("restarting the executor in place (%s): %w", bin, err)
	}
	return nil
}

// binary is the path of the program that argv0 started: as the agent ran
// it, a name looked up in PATH or a path relative to the sandbox.
func binary(argv0 string, lookPath func(string) (string, error)) string {
	bin := argv0
	if !strings.Contains(bin, "/") {
		if p, err := lookPath(bin); err == nil {
			bin = p
		}
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	return bin
}

// exitCode says how the executor ended: 0 when it was shut down or
// stopped, 1 when it failed or its agent is gone.
func exitCode(logger klog.Logger, err error) int {
	switch {
	case err == nil:
		logger.Info("Executor shut down")
		return 0
	case errors.Is(err, agentconn.ErrAgentGone):
		logger.Error(err, "Executor exits: its agent is gone, its pods are stopped")
		return 1
	case errors.Is(err, context.Canceled):
		logger.Info("Executor stopped", "cause", err)
		return 0
	default:
		logger.Error(err, "Executor failed")
		return 1
	}
}
