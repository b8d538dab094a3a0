package app

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/executor"
	"github.com/k8sm/k8sm/executor/config"
	"github.com/k8sm/k8sm/executor/cri"
	"github.com/k8sm/k8sm/executor/kernel"
	"github.com/k8sm/k8sm/executor/proxy"
)

// Config is everything Run needs, resolved from Options and the agent's
// environment: clients built, flags parsed.
type Config struct {
	Options *Options
	// Env is what the Mesos agent told the executor.
	Env     config.Env
	Taints  []v1.Taint
	Client  kubernetes.Interface
	Runtime *cri.Runtime

	// host is what the executor changes on its host and undoes on its
	// final exit; exec replaces the process (an in-place restart).
	host host
	exec func(argv0 string, argv, env []string) error
	// runExecutor is executor.Run but in tests.
	runExecutor func(context.Context, executor.Options) error
}

// Config validates the options and resolves them; getenv is the process's
// environment, as the Mesos agent set it.
func (o *Options) Config(getenv func(string) string) (*Config, error) {
	env, err := config.Parse(getenv)
	if err != nil {
		return nil, fmt.Errorf("not started by a Mesos agent: %w", err)
	}
	taints, err := o.taints()
	if err != nil {
		return nil, err
	}
	switch o.PodNetwork {
	case "":
	case "host-gw":
		if o.NodeIP == "" || o.ClusterCIDR == "" {
			return nil, fmt.Errorf("--pod-network=host-gw needs --node-ip (the address other nodes route this node's pods through) and --cluster-cidr")
		}
	default:
		return nil, fmt.Errorf("--pod-network=%q: want host-gw, or empty", o.PodNetwork)
	}
	for _, ip := range o.ClusterDNS {
		if _, err := netip.ParseAddr(ip); err != nil {
			return nil, fmt.Errorf("--cluster-dns %q: want IP addresses (the kube-dns Service's ClusterIP)", ip)
		}
	}
	if o.ProxyMode != "" {
		if err := o.proxyConfig().Validate(exec.LookPath); err != nil {
			return nil, err
		}
	}
	rc, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %q: %w", o.Kubeconfig, err)
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig %q: %w", o.Kubeconfig, err)
	}
	runtime, err := cri.Dial(o.RuntimeEndpoint)
	if err != nil {
		return nil, fmt.Errorf("--container-runtime-endpoint: %w", err)
	}
	return &Config{Options: o, Env: env, Taints: taints, Client: client, Runtime: runtime, host: realHost{kernel: kernel.Defaults{File: o.KernelDefaultsFile}}, exec: execProcess}, nil
}

// proxyConfig is the kube-proxy this node runs with --proxy-mode.
func (o *Options) proxyConfig() proxy.Config {
	return proxy.Config{Mode: o.ProxyMode, Kubeconfig: o.Kubeconfig, NodeName: o.NodeName, NodeIP: o.NodeIP,
		ClusterCIDR: o.ClusterCIDR, Dir: filepath.Join(o.RootDir, "kube-proxy")}
}
