package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/mounts"
)

// Cluster is a running local cluster.
type Cluster struct {
	Config Config
	// Started lists the components this Up started; the others were
	// already running and were adopted.
	Started []string

	// What tests and people use; the Mesos ones are empty with Agents 0.
	AdminKubeconfig string
	// MesosMasterURL serves /master/state and the scheduler API.
	MesosMasterURL string
	// SimControlURL is mesos-sim's fault API: POST /agents/{i}/kill|restart
	// (i is 0-based: agent i runs Node AgentNodes[i]).
	SimControlURL string
	// AgentNodes are the agents' hostnames, which are their Node names.
	AgentNodes []string
	// BrokerMetricsURL is the broker's /metrics (/healthz, /readyz beside it).
	BrokerMetricsURL string
	// LogDir holds one log file per component (<name>.log).
	LogDir string

	procs map[string]*Process
}

// component is one process of the cluster, in start order.
type component struct {
	name    string
	enabled func(Config) bool
	start   func(context.Context, Config) (*Process, error)
}

// components are the cluster's processes for c, in start order.
func components(c Config) []component {
	return append(append([]component(nil), controlPlane...), mesosComponents(c)...)
}

var controlPlane = []component{
	{name: "etcd", start: startEtcd},
	{name: "kube-apiserver", start: startAPIServer},
	{name: "kube-controller-manager", start: startControllerManager},
	{name: "zookeeper", start: func(ctx context.Context, c Config) (*Process, error) {
		return startZooKeeper(ctx, c.StateDir, filepath.Join(c.StateDir, "zookeeper"), c.ZooKeeperPort)
	}},
	{name: "containerd", enabled: sharedContainerd, start: startContainerd},
}

// sharedContainerd says whether the cluster-wide containerd runs: only
// without agents, which have containerds of their own.
func sharedContainerd(c Config) bool { return c.Containerd && c.Agents == 0 }

// ErrAlreadyUp is returned (wrapped) by Up when every component was already
// running: nothing was done.
var ErrAlreadyUp = errors.New("the local cluster is already up")

// Up starts whatever part of the cluster is not running and waits until
// all of it is healthy. Components left running by an earlier Up are
// adopted, dead ones (after a crash) are started again.
func Up(ctx context.Context, c Config) (*Cluster, error) {
	var err error
	// Pid files are trusted only for processes whose command line names the
	// state directory, so it must be spelled the same way every time.
	if c.StateDir, err = filepath.Abs(c.StateDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating state dir %s: %w", c.StateDir, err)
	}
	unlock, err := lockState(c.StateDir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := c.ensureRunDir(); err != nil {
		return nil, err
	}
	if err := recordPodSubnet(c); err != nil {
		return nil, err
	}
	apiserverIPs := []string{c.serviceIP()}
	if c.Agents > 0 {
		apiserverIPs = append(apiserverIPs, c.HostIP())
		if err := ensureAgentNetwork(c); err != nil {
			return nil, fmt.Errorf("making the agents' network: %w", err)
		}
	}
	if err := c.PKI().ensure(c.APIServerURL(), apiserverIPs...); err != nil {
		return nil, fmt.Errorf("making the cluster's certificates: %w", err)
	}
	cl := &Cluster{Config: c, procs: map[string]*Process{}, AdminKubeconfig: c.AdminKubeconfig(), LogDir: filepath.Join(c.StateDir, "logs")}
	if c.Agents > 0 {
		cl.MesosMasterURL, cl.SimControlURL, cl.AgentNodes, cl.BrokerMetricsURL = c.MesosMasterURL(), c.SimControlURL(), c.AgentNames(), c.BrokerMetricsURL()
	}
	// Images first: an agent's containerd must hold them before a pod
	// can be launched there, and the broker offers agents at once.
	imagesLoaded := false
	for _, comp := range components(c) {
		if comp.name == "mesos-sim" && !imagesLoaded {
			if err := loadImages(ctx, c); err != nil {
				return cl, err
			}
			imagesLoaded = true
		}
		if comp.enabled != nil && !comp.enabled(c) {
			continue
		}
		if p := adoptProcess(comp.name, c.StateDir); p != nil {
			klog.V(1).InfoS("Already running", "component", comp.name, "pid", p.Pid())
			cl.procs[comp.name] = p
			continue
		}
		klog.InfoS("Starting", "component", comp.name)
		p, err := comp.start(ctx, c)
		if err != nil {
			return cl, fmt.Errorf("starting %s: %w", comp.name, err)
		}
		cl.procs[comp.name] = p
		cl.Started = append(cl.Started, comp.name)
	}
	if !imagesLoaded {
		if err := loadImages(ctx, c); err != nil {
			return cl, err
		}
	}
	if err := cl.waitDefaultServiceAccount(ctx); err != nil {
		return cl, err
	}
	if c.Agents > 0 {
		if err := cl.waitNodes(ctx); err != nil {
			return cl, err
		}
		if c.ClusterDNS {
			if err := cl.DeployDNS(ctx); err != nil {
				return cl, err
			}
		}
		if c.SampleDeployment {
			if err := cl.runSample(ctx); err != nil {
				return cl, err
			}
		}
	}
	if len(cl.Started) == 0 {
		return cl, fmt.Errorf("%w in %s: nothing to do (`make down` stops it)", ErrAlreadyUp, c.StateDir)
	}
	return cl, nil
}

// Client is a clientset authenticated as the cluster admin.
func (cl *Cluster) Client() (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cl.Config.PKI().Kubeconfig("admin"))
	if err != nil {
		return nil, fmt.Errorf("loading admin kubeconfig: %w", err)
	}
	return kubernetes.NewForConfig(rc)
}

// Process returns a component's process, or nil when it is not part of the
// cluster.
func (cl *Cluster) Process(name string) *Process { return cl.procs[name] }

// waitDefaultServiceAccount waits until pods can be created in "default":
// the service account controller makes the account a moment after start,
// and until then the API server rejects pods that would use it.
func (cl *Cluster) waitDefaultServiceAccount(ctx context.Context) error {
	cs, err := cl.Client()
	if err != nil {
		return err
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, last = cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(last) {
			return false, nil
		}
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the default service account (is kube-controller-manager running? see %s): %v, last error: %v",
			filepath.Join(cl.Config.StateDir, "logs", "kube-controller-manager.log"), err, last)
	}
	return nil
}

// Down stops every process of the cluster in stateDir, tears down what
// containerd and CNI made (sandboxes, mounts, the bridge) and removes the
// state directory. It works after a crash too, and on a cluster that is
// not there.
func Down(ctx context.Context, stateDir string) error {
	stateDir, err := filepath.Abs(stateDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(stateDir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	unlock, err := lockState(stateDir)
	if err != nil {
		return err
	}
	var errs []error
	stop := func(name string) {
		if p := adoptProcess(name, stateDir); p != nil {
			klog.InfoS("Stopping", "component", p.Name, "pid", p.Pid())
			if err := p.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// The Mesos side first, so that nothing is launched while the
	// executors stop their pods, which they do on SIGTERM while their
	// containerds still run.
	stop("kube-scheduler")
	stop("k8sm-broker")
	stopExecutors(stateDir, Config{StateDir: stateDir}.runDir())
	stop("mesos-sim")
	ctrdDirs := append(glob(filepath.Join(stateDir, "a[0-9]*", "containerd")), filepath.Join(stateDir, "containerd"))
	// Sockets are reached through the short spelling of the state dir.
	short := Config{StateDir: stateDir}
	sockOf := func(dir string) string {
		return short.shortPath(strings.TrimPrefix(dir, stateDir), "containerd.sock")
	}
	for _, dir := range ctrdDirs {
		sock := sockOf(dir)
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		if criReady(rctx, sock) == nil {
			if err := removeSandboxes(rctx, sock); err != nil {
				klog.InfoS("Could not remove every pod sandbox; killing their processes instead", "socket", sock, "err", err)
			}
		}
		cancel()
	}
	// Every other process with a pid file, the last started first.
	for _, name := range stopOrder(stateDir) {
		stop(name)
	}
	// Shims and the containers under them outlive containerd by design.
	for _, dir := range ctrdDirs {
		killMatching(sockOf(dir))
	}
	// What a sandbox being made as containerd stopped left (its pods'
	// veths end in the agents' namespaces: before those go).
	if err := removeOwnPodNetns(stateDir); err != nil {
		errs = append(errs, fmt.Errorf("removing the pods' network namespaces: %w", err))
	}
	// and their nat rules, on the host for the control plane's containerd
	// (unless a live cluster took its bridge since).
	nets := map[string]bool{}
	for _, dir := range ctrdDirs {
		if b, err := os.ReadFile(filepath.Join(dir, "bridge")); err == nil {
			if br := strings.TrimSpace(string(b)); br != "" && bridgeOwner(br, stateDir) == "" {
				nets[cniNetworkName(br)] = true
			}
		}
	}
	if len(nets) > 0 {
		removeCNINatRules(func(n string) bool { return nets[n] })
	}
	if err := mounts.UnmountUnder(stateDir); err != nil {
		errs = append(errs, err)
	}
	if err := removeCgroupParent(stateDir); err != nil {
		errs = append(errs, err)
	}
	removeContainerLogLinks(stateDir)
	removeContainerLogLinks(short.runDir())
	if err := removeAgentNetwork(stateDir); err != nil {
		errs = append(errs, fmt.Errorf("removing the agents' network: %w", err))
	}
	for _, dir := range ctrdDirs {
		b, err := os.ReadFile(filepath.Join(dir, "bridge"))
		if err != nil {
			continue
		}
		br := strings.TrimSpace(string(b))
		if br != "" && bridgeOwner(br, stateDir) == "" {
			if _, err := os.Stat("/sys/class/net/" + br); err == nil {
				if out, err := exec.Command("ip", "link", "delete", br).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("deleting bridge %s: %v: %s", br, err, out))
				}
			}
		}
	}
	cleanHostLeftovers()
	short.removeRunDir()
	unlock()
	if len(errs) == 0 {
		if err := os.RemoveAll(stateDir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", stateDir, err))
		}
	}
	return errors.Join(errs...)
}

// Status reports, per component, whether it runs.
func Status(stateDir string, c Config) map[string]bool {
	st := map[string]bool{}
	for _, comp := range components(c) {
		if comp.enabled != nil && !comp.enabled(c) {
			continue
		}
		st[comp.name] = adoptProcess(comp.name, stateDir) != nil
	}
	return st
}

// lockState serialises up and down on one state directory: two `make up`s
// racing would start every component twice.
func lockState(stateDir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(stateDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening lock of %s: %w", stateDir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another `make up` or `make down` is working on %s: wait for it to finish", stateDir)
	}
	return func() { _ = unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}

// killMatching SIGKILLs every process whose command line contains marker,
// and their process groups.
func killMatching(marker string) {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	self := os.Getpid()
	for _, f := range procs {
		var pid int
		if _, err := fmt.Sscanf(f, "/proc/%d/cmdline", &pid); err != nil || pid == self {
			continue
		}
		if cmdlineContains(pid, marker) {
			klog.InfoS("Killing leftover process", "pid", pid)
			if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
				_ = syscall.Kill(-pid, syscall.SIGKILL)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
