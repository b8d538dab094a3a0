// Package kubelet runs the real kubelet of the pinned Kubernetes release
// inside the executor, as cmd/kubelet does (options → configuration →
// app.Run), except that the executor supplies its pod source: the kubelet
// sees exactly the pods Mesos launched, under the "api" source name, so it
// treats them as the ordinary API pods they are (no mirror pods).
package kubelet

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/cmd/kubelet/app"
	"k8s.io/kubernetes/cmd/kubelet/app/options"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	kubeletconfig "k8s.io/kubernetes/pkg/kubelet/apis/config"
	podconfig "k8s.io/kubernetes/pkg/kubelet/config"
	kubetypes "k8s.io/kubernetes/pkg/kubelet/types"
	kubeletutil "k8s.io/kubernetes/pkg/kubelet/util"
)

// Config is what the executor decides about its kubelet; everything else
// keeps the kubelet's defaults.
type Config struct {
	// Kubeconfig authenticates the kubelet as system:node:<node>.
	Kubeconfig string
	// ContainerRuntimeEndpoint is the CRI socket (unix:///run/containerd/containerd.sock).
	ContainerRuntimeEndpoint string
	// RootDir holds everything the kubelet writes: pods, plugins, logs, certs.
	RootDir string
	// CgroupRoot is the parent of the pods' cgroups; distinct per node so
	// that two kubelets can share a host (default /k8sm/<node>).
	CgroupRoot string
	// Port serves logs, exec, port-forward and stats (default 10250).
	Port int32
	// Address the server binds to (default 0.0.0.0).
	Address string
	// TLSCertFile and TLSKeyFile serve the kubelet's HTTPS; a self-signed
	// pair is made under RootDir when empty (then the API server must not
	// verify kubelets).
	TLSCertFile, TLSKeyFile string
	// ClientCAFile verifies the API server's client certificate (x509
	// authentication); bearer tokens are checked by TokenReview and every
	// request is authorized by SubjectAccessReview.
	ClientCAFile string
	// NodeIP is the node's address; empty lets the kubelet choose.
	NodeIP string
	// NodeLabels and RegisterWithTaints are used when the kubelet creates
	// the Node; they must match what the broker puts on the Node it mirrors.
	NodeLabels         map[string]string
	RegisterWithTaints []v1.Taint
	// SystemReserved is kept from the node's allocatable (cpu, memory,
	// ephemeral-storage): set it to what the host keeps outside Mesos, so
	// that the kubelet's allocatable matches the agent's resources.
	SystemReserved map[string]string
	// ClusterDNS are the cluster DNS server's addresses (the kube-dns
	// Service's ClusterIP) that pods with dnsPolicy ClusterFirst resolve
	// through, in ClusterDomain; empty: pods get the host's resolv.conf.
	ClusterDNS    []string
	ClusterDomain string
	// ProtectKernelDefaults makes the kubelet refuse to start on a host
	// whose kernel settings (kernel.Tunables) are not already what it wants,
	// instead of changing them.
	ProtectKernelDefaults bool
	// Modify changes the configuration last (tests, special hosts).
	Modify func(*options.KubeletServer)
	// Fatal is called when the kubelet stops with an error.
	Fatal func(error)
}

// Kubelet is the embedded kubelet.
type Kubelet struct {
	cfg  Config
	node string // set by Start
}

// New returns a kubelet that Start runs.
func New(cfg Config) *Kubelet { return &Kubelet{cfg: cfg} }

// Server builds the kubelet's options and configuration for node, with the
// settings these hosts need (documented in the README of executor/).
func (k *Kubelet) Server(node string) (*options.KubeletServer, error) {
	c := k.cfg
	if c.RootDir == "" {
		return nil, fmt.Errorf("configuring the kubelet: no root directory")
	}
	root, err := filepath.Abs(c.RootDir)
	if err != nil {
		return nil, fmt.Errorf("configuring the kubelet: %w", err)
	}
	flags := options.NewKubeletFlags()
	kc, err := options.NewKubeletConfiguration()
	if err != nil {
		return nil, fmt.Errorf("configuring the kubelet: %w", err)
	}
	flags.KubeConfig = c.Kubeconfig
	flags.HostnameOverride = node
	flags.NodeIP = c.NodeIP
	flags.RootDirectory = root
	flags.CertDirectory = filepath.Join(root, "pki")
	for k, v := range c.NodeLabels {
		flags.NodeLabels[k] = v
	}

	kc.ContainerRuntimeEndpoint = c.ContainerRuntimeEndpoint
	kc.PodLogsDir = filepath.Join(root, "pod-logs")
	// The pod source is the executor's: no static pods, no manifest URL.
	kc.StaticPodPath = ""
	kc.StaticPodURL = ""
	// cgroups: cgroupfs (no systemd here), each node under its own root.
	kc.CgroupDriver = "cgroupfs"
	kc.CgroupsPerQOS = true
	kc.CgroupRoot = k.CgroupRoot(node)
	kc.EnforceNodeAllocatable = []string{"pods"}
	// cgroup v1 hosts are refused by default since 1.35.
	kc.FailCgroupV1 = false
	kc.FailSwapOn = false
	// Root may lack CAP_SYS_RESOURCE: a negative score is refused.
	kc.OOMScoreAdj = 0
	// Mesos decides what the node may use; the kubelet must not evict or
	// collect images on its own thresholds.
	kc.EvictionHard = map[string]string{"memory.available": "0%", "nodefs.available": "0%", "imagefs.available": "0%", "nodefs.inodesFree": "0%"}
	kc.ImageGCHighThresholdPercent = 100
	kc.ImageGCLowThresholdPercent = 99
	// With true the kubelet refuses to start unless the host already has
	// the kernel settings it wants (a host prepared for it); with false it
	// sets them, and the executor gives back the host's own even after a
	// crash (executor/kernel).
	kc.ProtectKernelDefaults = c.ProtectKernelDefaults
	if len(c.SystemReserved) > 0 {
		kc.SystemReserved = c.SystemReserved
	}
	kc.RegisterNode = true
	kc.RegisterWithTaints = c.RegisterWithTaints
	// The kubelet's server, authenticated and authorized, so that kubectl
	// logs, exec and port-forward work through the API server.
	kc.EnableServer = true
	kc.Port = c.Port
	if kc.Port == 0 {
		kc.Port = 10250
	}
	kc.Address = c.Address
	if kc.Address == "" {
		kc.Address = "0.0.0.0"
	}
	kc.ReadOnlyPort = 0
	kc.HealthzPort = 0
	kc.TLSCertFile, kc.TLSPrivateKeyFile = c.TLSCertFile, c.TLSKeyFile
	kc.Authentication.Anonymous.Enabled = false
	kc.Authentication.Webhook.Enabled = true
	kc.Authentication.X509.ClientCAFile = c.ClientCAFile
	kc.Authorization.Mode = kubeletconfig.KubeletAuthorizationModeWebhook
	// One kubelet per host is not a given here: no host-wide lock file, and
	// no resolv.conf surprises (pods get the host's).
	kc.ResolverConfig = "/etc/resolv.conf"
	if _, err := os.Stat(kc.ResolverConfig); err != nil {
		kc.ResolverConfig = ""
	}
	kc.ClusterDNS = c.ClusterDNS
	kc.ClusterDomain = c.ClusterDomain
	// Faster status for tasks: the kubelet reports pod state at this pace.
	kc.SyncFrequency = metav1.Duration{Duration: 10 * time.Second}

	s := &options.KubeletServer{KubeletFlags: *flags, KubeletConfiguration: *kc}
	if c.Modify != nil {
		c.Modify(s)
	}
	if err := options.ValidateKubeletFlags(&s.KubeletFlags); err != nil {
		return nil, fmt.Errorf("configuring the kubelet: %w", err)
	}
	return s, nil
}

// Start runs the kubelet as node; every set received on pods replaces the
// kubelet's "api" pods. It returns once the kubelet's dependencies are
// built; later failures go to Config.Fatal.
func (k *Kubelet) Start(ctx context.Context, node string, pods <-chan []*v1.Pod) error {
	logger := klog.FromContext(ctx)
	s, err := k.Server(node)
	if err != nil {
		return err
	}
	for _, d := range []string{s.RootDirectory, s.PodLogsDir} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return fmt.Errorf("creating kubelet directory: %w", err)
		}
	}
	k.node = node
	if err := EnsureCgroupRoot(s.CgroupRoot); err != nil {
		return err
	}
	if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(s.FeatureGates); err != nil {
		return fmt.Errorf("setting kubelet feature gates: %w", err)
	}
	deps, err := app.UnsecuredDependencies(ctx, s, utilfeature.DefaultFeatureGate)
	if err != nil {
		return fmt.Errorf("building kubelet dependencies: %w", err)
	}

	// The recorder and startup tracker must exist before the pod config,
	// which the kubelet then uses instead of building its own sources.
	rc, err := clientcmd.BuildConfigFromFlags("", s.KubeConfig)
	if err != nil {
		return fmt.Errorf("reading kubeconfig %s: %w", s.KubeConfig, err)
	}
	events, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("building the event client: %w", err)
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartStructuredLogging(3)
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: events.CoreV1().Events("")})
	deps.Recorder = broadcaster.NewRecorder(legacyscheme.Scheme, v1.EventSource{Component: "kubelet", Host: node})
	deps.PodStartupLatencyTracker = kubeletutil.NewPodStartupLatencyTracker()
	deps.PodConfig = podconfig.NewPodConfig(deps.Recorder, deps.PodStartupLatencyTracker)
	source := deps.PodConfig.Channel(ctx, kubetypes.ApiserverSource)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case set := <-pods:
				select {
				case source <- struct{ Pods []*v1.Pod }{Pods: set}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()

	if own := ContainerCgroup(); own != "" && s.CgroupRoot != own && !strings.HasPrefix(s.CgroupRoot, own+"/") {
		logger.Info("The pods' cgroups are outside the executor's Mesos container: pods outlive an executor that is killed", "cgroupRoot", s.CgroupRoot, "container", own)
	}
	logger.Info("Running the embedded kubelet", "node", node, "rootDir", s.RootDirectory, "cgroupRoot", s.CgroupRoot,
		"runtime", s.ContainerRuntimeEndpoint, "port", s.Port)
	go func() {
		err := app.Run(ctx, s, deps, utilfeature.DefaultFeatureGate)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = fmt.Errorf("the kubelet stopped")
		}
		logger.Error(err, "Embedded kubelet failed")
		if k.cfg.Fatal != nil {
			k.cfg.Fatal(err)
		}
	}()
	return nil
}

// RemoveCgroups removes the pods' cgroups of the node the kubelet ran as,
// once its pods are stopped.
func (k *Kubelet) RemoveCgroups() error {
	if k.node == "" {
		return nil
	}
	return RemoveCgroupRoot(k.CgroupRoot(k.node))
}

// CgroupRoot is the pods' parent cgroup for node: the configured one, or
// below the executor's own Mesos container (ContainerCgroup), so that the
// pods belong to the container: when the executor ends, however it ends,
// the agent destroys the container and every pod process with it, and
// what Mesos accounts as the executor's is what runs. Outside a container
// (an agent without cgroup isolation) it is /k8sm/<node>.
func (k *Kubelet) CgroupRoot(node string) string {
	if k.cfg.CgroupRoot != "" {
		return k.cfg.CgroupRoot
	}
	if own := ContainerCgroup(); own != "" {
		return path.Join(own, "kubelet")
	}
	return "/k8sm/" + node
}
