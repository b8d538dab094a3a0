// Package app is the k8sm-executor program, in the shape of the broker's
// (broker/app) and of Kubernetes components: Options (flags, with K8SM_*
// environment defaults) are validated into a Config, which Run runs.
package app

import (
	goflag "flag"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	taintutil "k8s.io/kubernetes/pkg/util/taints"

	"github.com/k8sm/k8sm/executor/config"
	"github.com/k8sm/k8sm/executor/kernel"
)

// Options are the flags of k8sm-executor.
type Options struct {
	Kubeconfig       string
	RuntimeEndpoint  string
	NodeName         string
	RootDir          string
	CgroupRoot       string
	KubeletPort      int32
	KubeletAddress   string
	TLSCertFile      string
	TLSKeyFile       string
	ClientCAFile     string
	NodeIP           string
	NodeLabels       map[string]string
	Taints           []string
	SystemReserved   map[string]string
	BindTimeout      time.Duration
	ImagePullTimeout time.Duration
	// PodNetwork is how this node's pods reach other nodes' pods:
	// "host-gw" (executor/podnet) or empty (the host's CNI does it).
	PodNetwork  string
	ClusterCIDR string
	// ClusterDNS and ClusterDomain are the kubelet's: the cluster DNS
	// Service's address and the cluster's domain.
	ClusterDNS    []string
	ClusterDomain string
	// ProxyMode runs the stock kube-proxy beside the kubelet in this mode
	// (executor/proxy); empty: none.
	ProxyMode string
	// ProtectKernelDefaults and KernelDefaultsFile: see their flags.
	ProtectKernelDefaults bool
	KernelDefaultsFile    string
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	return &Options{
		RuntimeEndpoint:    "unix:///run/containerd/containerd.sock",
		RootDir:            "/var/lib/k8sm/kubelet",
		KubeletPort:        10250,
		KubeletAddress:     "0.0.0.0",
		BindTimeout:        2 * time.Minute,
		ImagePullTimeout:   5 * time.Minute,
		ClusterDomain:      "cluster.local",
		KernelDefaultsFile: kernel.DefaultFile,
	}
}

// AddFlags adds the executor's own flags to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "kubeconfig of the node's identity (system:node:<node>), for the kubelet and the executor")
	fs.StringVar(&o.RuntimeEndpoint, "container-runtime-endpoint", o.RuntimeEndpoint, "CRI endpoint of containerd")
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "Node name (default: the agent's hostname, as the broker mirrors it)")
	fs.StringVar(&o.RootDir, "root-dir", o.RootDir, "kubelet root directory: pods, volumes, logs, certificates")
	fs.StringVar(&o.CgroupRoot, "cgroup-root", o.CgroupRoot, "parent cgroup of the pods (default: <the executor's Mesos container cgroup>/kubelet, so that the agent's destroying the container stops the pods; /k8sm/<node> when the agent gives the executor no cgroup of its own)")
	fs.Int32Var(&o.KubeletPort, "kubelet-port", o.KubeletPort, "port of the kubelet's HTTPS server (logs, exec, port-forward)")
	fs.StringVar(&o.KubeletAddress, "kubelet-address", o.KubeletAddress, "address of the kubelet's HTTPS server")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "kubelet serving certificate (signed by a CA the API server trusts); self-signed when empty")
	fs.StringVar(&o.TLSKeyFile, "tls-private-key-file", o.TLSKeyFile, "key of --tls-cert-file")
	fs.StringVar(&o.ClientCAFile, "client-ca-file", o.ClientCAFile, "CA that signs the API server's kubelet client certificate")
	fs.StringVar(&o.NodeIP, "node-ip", o.NodeIP, "the node's IP (default: chosen by the kubelet)")
	fs.StringToStringVar(&o.NodeLabels, "node-labels", o.NodeLabels, "labels of the Node when the kubelet creates it (match the broker's)")
	fs.StringSliceVar(&o.Taints, "register-with-taints", o.Taints, "taints of the Node when the kubelet creates it, key=value:Effect (match the broker's)")
	fs.StringToStringVar(&o.SystemReserved, "system-reserved", o.SystemReserved, "resources the host keeps outside Mesos (cpu=1,memory=2Gi): the Node's allocatable then matches the agent's resources")
	fs.DurationVar(&o.BindTimeout, "bind-timeout", o.BindTimeout, "how long a launched pod may be missing from the API server before its task fails")
	fs.DurationVar(&o.ImagePullTimeout, "image-pull-timeout", o.ImagePullTimeout, "how long a container may wait for its image before its task fails")
	fs.StringVar(&o.PodNetwork, "pod-network", o.PodNetwork, "how this node's pods reach other nodes' pods: host-gw (routes to every Node's pod CIDR through its InternalIP, pods' traffic leaving --cluster-cidr masqueraded; needs --node-ip and nodes on one link), or empty when a CNI plugin or daemon of the host's does it")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", o.ClusterCIDR, "every pod's address range (kube-controller-manager --cluster-cidr), for --pod-network=host-gw and kube-proxy")
	fs.StringSliceVar(&o.ClusterDNS, "cluster-dns", o.ClusterDNS, "addresses of the cluster DNS (the kube-dns Service's ClusterIP), which the kubelet gives pods with dnsPolicy ClusterFirst; empty: pods resolve as the host does")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", o.ClusterDomain, "the cluster's DNS domain, searched by pods after their namespace's")
	fs.StringVar(&o.ProxyMode, "proxy-mode", o.ProxyMode, "run the stock kube-proxy beside the kubelet in this mode (iptables or nftables) with the node's credentials, stopped with the executor and its rules removed; empty: no kube-proxy")
	fs.BoolVar(&o.ProtectKernelDefaults, "protect-kernel-defaults", o.ProtectKernelDefaults, "make the kubelet refuse to start when the host's kernel settings (vm.overcommit_memory, vm.panic_on_oom, kernel.panic, kernel.panic_on_oops, kernel.keys.root_maxkeys/maxbytes) are not what it wants, instead of changing them: for hosts prepared with those values")
	fs.StringVar(&o.KernelDefaultsFile, "kernel-defaults-file", o.KernelDefaultsFile, "where the host's own kernel settings are kept while the kubelet may have changed them; an executor that finds it (one before it was killed) restores them at start, and the last clean exit restores them and removes it. One per host, outside the sandbox")
}

// Parse reads the command line (args without the program name) and, for
// every own flag it leaves unset, the K8SM_<FLAG> variable of getenv
// (config.ApplyFlagEnv); klog's flags are on the command line only. It
// returns the options and the environment variables used.
func Parse(args []string, getenv func(string) string) (*Options, []string, error) {
	o := NewOptions()
	fs := pflag.NewFlagSet("k8sm-executor", pflag.ContinueOnError)
	o.AddFlags(fs)
	// Only the executor's own flags take K8SM_* defaults, not klog's.
	own := pflag.NewFlagSet("own", pflag.ContinueOnError)
	own.AddFlagSet(fs)
	gofs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(gofs)
	fs.AddGoFlagSet(gofs)
	if err := fs.Parse(args); err != nil {
		return nil, nil, err
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("k8sm-executor takes no arguments, got %q", fs.Args())
	}
	used, err := config.ApplyFlagEnv(own, getenv)
	if err != nil {
		return nil, used, err
	}
	return o, used, nil
}

// taints parses --register-with-taints.
func (o *Options) taints() ([]v1.Taint, error) {
	var out []v1.Taint
	for _, s := range o.Taints {
		t, _, err := taintutil.ParseTaints([]string{s})
		if err != nil {
			return nil, fmt.Errorf("--register-with-taints %q: %w", s, err)
		}
		if len(t) != 1 {
			return nil, fmt.Errorf("--register-with-taints %q: want one key=value:Effect", s)
		}
		out = append(out, t...)
	}
	return out, nil
}
