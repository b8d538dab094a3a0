// Command k8sm-executor is the k8sm Mesos executor: the Mesos agent starts
// it (one per agent and framework) from the broker's ExecutorInfo; it runs
// an embedded kubelet registered as the agent's Node and runs exactly the
// pods Mesos launched on it. See executor/README.md.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	taintutil "k8s.io/kubernetes/pkg/util/taints"

	"github.com/k8sm/k8sm/executor"
	"github.com/k8sm/k8sm/executor/agentconn"
	"github.com/k8sm/k8sm/executor/config"
	"github.com/k8sm/k8sm/executor/cri"
	"github.com/k8sm/k8sm/executor/kubelet"
	"github.com/k8sm/k8sm/pkg/mounts"
)

type flags struct {
	kubeconfig       string
	runtimeEndpoint  string
	nodeName         string
	rootDir          string
	cgroupRoot       string
	kubeletPort      int32
	kubeletAddress   string
	tlsCert, tlsKey  string
	clientCA         string
	nodeIP           string
	nodeLabels       map[string]string
	taints           []string
	systemReserved   map[string]string
	bindTimeout      time.Duration
	imagePullTimeout time.Duration
}

func main() {
	var f flags
	fs := pflag.NewFlagSet("k8sm-executor", pflag.ExitOnError)
	fs.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig of the node's identity (system:node:<node>), for the kubelet and the executor")
	fs.StringVar(&f.runtimeEndpoint, "container-runtime-endpoint", "unix:///run/containerd/containerd.sock", "CRI endpoint of containerd")
	fs.StringVar(&f.nodeName, "node-name", "", "Node name (default: the agent's hostname, as the broker mirrors it)")
	fs.StringVar(&f.rootDir, "root-dir", "/var/lib/k8sm/kubelet", "kubelet root directory: pods, volumes, logs, certificates")
	fs.StringVar(&f.cgroupRoot, "cgroup-root", "", "parent cgroup of the pods (default /k8sm/<node>)")
	fs.Int32Var(&f.kubeletPort, "kubelet-port", 10250, "port of the kubelet's HTTPS server (logs, exec, port-forward)")
	fs.StringVar(&f.kubeletAddress, "kubelet-address", "0.0.0.0", "address of the kubelet's HTTPS server")
	fs.StringVar(&f.tlsCert, "tls-cert-file", "", "kubelet serving certificate (signed by a CA the API server trusts); self-signed when empty")
	fs.StringVar(&f.tlsKey, "tls-private-key-file", "", "key of --tls-cert-file")
	fs.StringVar(&f.clientCA, "client-ca-file", "", "CA that signs the API server's kubelet client certificate")
	fs.StringVar(&f.nodeIP, "node-ip", "", "the node's IP (default: chosen by the kubelet)")
	fs.StringToStringVar(&f.nodeLabels, "node-labels", nil, "labels of the Node when the kubelet creates it (match the broker's)")
	fs.StringSliceVar(&f.taints, "register-with-taints", nil, "taints of the Node when the kubelet creates it, key=value:Effect (match the broker's)")
	fs.StringToStringVar(&f.systemReserved, "system-reserved", nil, "resources the host keeps outside Mesos (cpu=1,memory=2Gi): the Node's allocatable then matches the agent's resources")
	fs.DurationVar(&f.bindTimeout, "bind-timeout", 2*time.Minute, "how long a launched pod may be missing from the API server before its task fails")
	fs.DurationVar(&f.imagePullTimeout, "image-pull-timeout", 5*time.Minute, "how long a container may wait for its image before its task fails")
	// Only the executor's own flags take K8SM_* defaults, not klog's.
	own := pflag.NewFlagSet("own", pflag.ContinueOnError)
	own.AddFlagSet(fs)
	gofs := goflag.NewFlagSet("klog", goflag.ExitOnError)
	klog.InitFlags(gofs)
	fs.AddGoFlagSet(gofs)
	_ = fs.Parse(os.Args[1:])
	used, err := config.ApplyFlagEnv(own, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "k8sm-executor:", err)
		os.Exit(2)
	}
	if len(used) > 0 {
		klog.InfoS("Flag defaults from the environment", "variables", used)
	}

	os.Exit(run(f))
}

func run(f flags) int {
	logger := klog.Background()
	env, err := config.FromEnv()
	if err != nil {
		logger.Error(err, "Not started by a Mesos agent")
		return 2
	}
	var taints []v1.Taint
	for _, s := range f.taints {
		t, _, err := taintutil.ParseTaints([]string{s})
		if err != nil || len(t) != 1 {
			logger.Error(err, "Bad --register-with-taints", "taint", s)
			return 2
		}
		taints = append(taints, t...)
	}
	rc, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		logger.Error(err, "Reading the kubeconfig", "path", f.kubeconfig)
		return 2
	}
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		logger.Error(err, "Building the API client")
		return 2
	}
	runtime, err := cri.Dial(f.runtimeEndpoint)
	if err != nil {
		logger.Error(err, "Connecting to the container runtime")
		return 2
	}
	defer runtime.Close()

	ctx, cancel := context.WithCancelCause(klog.NewContext(context.Background(), logger))
	defer cancel(nil)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	restart := make(chan struct{}, 1)
	go func() {
		for s := range sigs {
			if s == syscall.SIGHUP {
				// An in-place restart (an upgrade of the binary): same process
				// for the agent, pods keep running and are adopted.
				select {
				case restart <- struct{}{}:
				default:
				}
				continue
			}
			cancel(fmt.Errorf("signal %v", s))
		}
	}()
	tunables := kubelet.SaveTunables()
	kl := kubelet.New(kubelet.Config{
		Kubeconfig: f.kubeconfig, ContainerRuntimeEndpoint: f.runtimeEndpoint, RootDir: f.rootDir,
		CgroupRoot: f.cgroupRoot, Port: f.kubeletPort, Address: f.kubeletAddress,
		TLSCertFile: f.tlsCert, TLSKeyFile: f.tlsKey, ClientCAFile: f.clientCA, NodeIP: f.nodeIP,
		NodeLabels: f.nodeLabels, RegisterWithTaints: taints, SystemReserved: f.systemReserved,
		Fatal: func(err error) { cancel(fmt.Errorf("kubelet failed: %w", err)) },
	})
	err = executor.Run(ctx, executor.Options{
		Env: env, NodeName: f.nodeName, Client: client, Kubelet: kl, Runtime: runtime,
		BindTimeout: f.bindTimeout, ImagePullTimeout: f.imagePullTimeout, Restart: restart,
	})
	if errors.Is(err, executor.ErrRestart) {
		reexec(logger)
		return 1
	}
	// Final exit: leave the host as found.
	if uerr := mounts.UnmountUnder(f.rootDir); uerr != nil {
		logger.Error(uerr, "Unmounting the kubelet's mounts")
	}
	// The kubelet's housekeeping removes the cgroups of stopped pods a
	// moment after their sandboxes: retry for a while.
	for i := 0; ; i++ {
		cerr := kl.RemoveCgroups()
		if cerr == nil {
			break
		}
		if i == 20 {
			logger.Error(cerr, "Removing the pods' cgroups")
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	kubelet.RestoreTunables(logger, tunables)
	switch {
	case err == nil:
		logger.Info("Executor shut down")
		return 0
	case errors.Is(err, agentconn.ErrAgentGone):
		logger.Error(err, "Executor exits: its agent is gone, its pods are stopped")
		return 1
	case errors.Is(err, context.Canceled):
		logger.Info("Executor stopped", "cause", context.Cause(ctx))
		return 0
	default:
		logger.Error(err, "Executor failed")
		return 1
	}
}

// reexec replaces this process by a new run of the (maybe upgraded) binary,
// keeping the pid, so that the agent sees its executor still alive.
func reexec(logger klog.Logger) {
	bin := os.Args[0]
	if !strings.Contains(bin, "/") {
		if p, err := exec.LookPath(bin); err == nil {
			bin = p
		}
	}
	bin, _ = filepath.Abs(bin)
	logger.Info("Restarting the executor in place", "binary", bin)
	klog.Flush()
	err := syscall.Exec(bin, os.Args, os.Environ())
	logger.Error(err, "Restarting the executor in place")
}
