// Package app is the k8sm-broker program, in the shape of Kubernetes
// components: Options (flags) are validated into a Config, which Run runs.
package app

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	logsapi "k8s.io/component-base/logs/api/v1"

	"github.com/k8sm/k8sm/broker/pods"
	brokerzk "github.com/k8sm/k8sm/broker/zk"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/rolepolicy"
)

// Options are the flags of k8sm-broker.
type Options struct {
	Master            string
	ZK                string
	ZKCredentialsFile string
	FrameworkName     string
	FrameworkUser     string
	Roles             []string
	Principal         string
	SecretFile        string
	MasterCAFile      string
	FailoverTimeout   time.Duration
	Checkpoint        bool
	Codec             string
	MissedHeartbeats  int
	Hostname          string
	PartitionAware    bool
	RolePolicyFile    string

	RefuseSeconds     float64
	DeclineAfter      time.Duration
	HoldWhilePending  time.Duration
	BatchWindow       time.Duration
	DefaultTTL        time.Duration
	MaxTTL            time.Duration
	ReconcileInterval time.Duration
	TaskLaunchTimeout time.Duration
	DefaultPodCPUs    float64
	DefaultPodMemMB   float64

	ExecutorCommand       string
	ExecutorBinary        string
	ExecutorURLBase       string
	ExecutorBindAddress   string
	ExecutorURIs          []string
	ExecutorSHA256        string
	ExecutorKubeconfig    string
	ExecutorCRI           string
	ExecutorRootDir       string
	ExecutorArgs          []string
	ExecutorCPUs          float64
	ExecutorMemMB         float64
	ExecutorShutdownGrace time.Duration

	Kubeconfig        string
	KubeAPIQPS        float32
	KubeAPIBurst      int32
	SchedulerName     string
	NodeLeaseDuration time.Duration
	NodeSyncWorkers   int32
	AgentListInterval time.Duration
	PodSyncWorkers    int32

	GRPCAddress string
	GRPC        GRPCSecurityOptions
	HTTPAddress string
	EnablePprof bool
	MemoryLimit string

	LeaderElect bool
	Identity    string

	// FailpointsDir arms pkg/failpoint's points: tests only.
	FailpointsDir string

	Logs *logsapi.LoggingConfiguration
}

// NewOptions returns the defaults.
func NewOptions() *Options {
	host, _ := os.Hostname()
	return &Options{
		FrameworkName:       "k8sm",
		FrameworkUser:       "root",
		Roles:               []string{"*"},
		FailoverTimeout:     7 * 24 * time.Hour,
		Checkpoint:          true,
		Codec:               "protobuf",
		MissedHeartbeats:    3,
		Hostname:            host,
		RefuseSeconds:       5,
		DeclineAfter:        5 * time.Second,
		HoldWhilePending:    30 * time.Second,
		BatchWindow:         100 * time.Millisecond,
		DefaultTTL:          30 * time.Second,
		MaxTTL:              5 * time.Minute,
		ReconcileInterval:   5 * time.Minute,
		TaskLaunchTimeout:   pods.DefaultLaunchTimeout,
		DefaultPodCPUs:      podresources.DefaultPodCPUs.Float(),
		DefaultPodMemMB:     podresources.DefaultPodMemMB.Float(),
		ExecutorCommand:     "./k8sm-executor",
		ExecutorBindAddress: "0.0.0.0:10352",
		ExecutorCPUs:        0.25,
		ExecutorMemMB:       128,
		// A pod's default grace period (30 s) and the executor's own
		// cleanup after its pods.
		ExecutorShutdownGrace: 45 * time.Second,
		// kube-scheduler's: the broker's writes (binding-time Node
		// status, pod phases, Leases) grow with the scheduler's pods/s,
		// which client-go's 5 QPS would throttle.
		KubeAPIQPS:        50,
		KubeAPIBurst:      100,
		SchedulerName:     "mesos-scheduler",
		NodeLeaseDuration: 40 * time.Second,
		NodeSyncWorkers:   16,
		AgentListInterval: 15 * time.Second,
		PodSyncWorkers:    pods.DefaultWorkers,
		GRPCAddress:       "0.0.0.0:10350",
		GRPC:              newGRPCSecurityOptions(),
		HTTPAddress:       "0.0.0.0:10351",
		PartitionAware:    true,
		LeaderElect:       true,
		Identity:          host,
		Logs:              logsapi.NewLoggingConfiguration(),
	}
}

// Flags returns the flags in named sections, for --help.
func (o *Options) Flags() cliflag.NamedFlagSets {
	var fss cliflag.NamedFlagSets
	fs := fss.FlagSet("mesos")
	fs.StringVar(&o.Master, "master", o.Master, "The Mesos master: zk://host1:2181,host2:2181/mesos (leader detection through ZooKeeper) or http://host:5050.")
	fs.StringVar(&o.FrameworkName, "framework-name", o.FrameworkName, "The framework's name in Mesos.")
	fs.StringVar(&o.FrameworkUser, "framework-user", o.FrameworkUser, "The user the executors run as.")
	fs.StringSliceVar(&o.Roles, "roles", o.Roles, "The roles the framework subscribes with (MULTI_ROLE).")
	fs.StringVar(&o.RolePolicyFile, "role-policy-file", o.RolePolicyFile, "The role policy: which namespaces' pods may use which of the framework's Mesos roles (a RolePolicy, docs/security.md), read again when it changes. Give the scheduler plugin's rolePolicyFile the same file. Empty: role \"*\" for every namespace, no other role.")
	fs.StringVar(&o.Principal, "principal", o.Principal, "The framework principal for authentication and reservations.")
	fs.StringVar(&o.SecretFile, "secret-file", o.SecretFile, "A file holding the principal's secret, sent with every scheduler API call (HTTP basic authentication, for masters with --authenticate_http_frameworks). Use it only with an https master: over http the secret travels in clear.")
	fs.StringVar(&o.MasterCAFile, "master-ca-file", o.MasterCAFile, "PEM certificates of the CAs that sign the Mesos masters' certificates (masters with LIBPROCESS_SSL_ENABLED). With it, the masters found through a zk:// --master are reached over https; an https:// --master is verified against it (the system's CAs otherwise).")
	fs.DurationVar(&o.FailoverTimeout, "failover-timeout", o.FailoverTimeout, "How long Mesos keeps the framework's tasks while no broker is subscribed.")
	fs.BoolVar(&o.Checkpoint, "checkpoint", o.Checkpoint, "Ask agents to checkpoint the framework's tasks (they survive agent restarts).")
	fs.StringVar(&o.Codec, "mesos-codec", o.Codec, "The encoding of the scheduler API: protobuf or json.")
	fs.IntVar(&o.MissedHeartbeats, "missed-heartbeats", o.MissedHeartbeats, "Heartbeat intervals without any event before the connection is dropped and re-established.")
	fs.StringVar(&o.Hostname, "framework-hostname", o.Hostname, "The hostname the framework reports to Mesos.")
	fs.BoolVar(&o.PartitionAware, "partition-aware", o.PartitionAware, "Subscribe with the PARTITION_AWARE capability: the pods of an agent Mesos cannot reach are kept (TASK_UNREACHABLE; their Node goes NotReady once no kubelet renews it, and Kubernetes evicts them on its own schedule) and come back when the agent does, instead of failing at once (TASK_LOST) and being replaced while they may still run. Only TASK_GONE/TASK_GONE_BY_OPERATOR end them.")

	fs = fss.FlagSet("offers")
	fs.Float64Var(&o.RefuseSeconds, "refuse-seconds", o.RefuseSeconds, "The filter sent with declined offers and with what a launch leaves of its offers: seconds before Mesos offers them again. While pods are pending, a launch's leftovers are sent back with 0 instead, so that the rest of the agent comes back at the next allocation.")
	fs.DurationVar(&o.DeclineAfter, "decline-after", o.DeclineAfter, "How long an offer no pod reserved is held before it is declined.")
	fs.DurationVar(&o.HoldWhilePending, "hold-offers-while-pending", o.HoldWhilePending, "While a pending pod could use an agent's offers (its resources, host ports and roles fit), they are held past --decline-after, up to this long from their arrival, then declined: a burst of pods is placed without declining and re-receiving every agent's offer each --decline-after. Other frameworks wait at most this long for those resources. 0 (or anything not beyond --decline-after): declined at --decline-after, as when nothing is pending.")
	fs.DurationVar(&o.BatchWindow, "launch-batch-window", o.BatchWindow, "How long a launch waits for the other pods reserved on the same agent, to launch them in one ACCEPT.")
	fs.DurationVar(&o.DefaultTTL, "reservation-ttl", o.DefaultTTL, "How long a reservation holds without a launch, when the scheduler asks for no TTL.")
	fs.DurationVar(&o.MaxTTL, "reservation-max-ttl", o.MaxTTL, "The longest TTL a reservation may have.")
	fs.DurationVar(&o.ReconcileInterval, "reconcile-interval", o.ReconcileInterval, "How often tasks are reconciled with Mesos besides after every subscription.")
	fs.DurationVar(&o.TaskLaunchTimeout, "task-launch-timeout", o.TaskLaunchTimeout, "How long after its pod was bound a task may stay TASK_STAGING (the agent fetching the executor, the executor not registering) before the broker kills it; the pod then fails (reason MesosTaskLaunchTimeout) and its controller replaces it. As Marathon's task_launch_timeout, counted up to the executor's first status (TASK_STARTING: the pod handed to the kubelet); the kubelet's own waits (image pulls, readiness) are not cut short. 0 disables.")

	fs.Float64Var(&o.DefaultPodCPUs, "default-pod-cpus", o.DefaultPodCPUs, "CPUs charged to a pod that requests none (BestEffort pods): Mesos refuses a task without resources. The scheduler plugin records the charge as a MesosDefaultResources event on the pod.")
	fs.Float64Var(&o.DefaultPodMemMB, "default-pod-mem", o.DefaultPodMemMB, "Memory (MB) charged to a pod that requests none.")

	fs = fss.FlagSet("executor")
	fs.StringVar(&o.ExecutorCommand, "executor-command", o.ExecutorCommand, "The k8sm-executor binary on the agent, or the name of a file fetched by --executor-uri.")
	fs.StringVar(&o.ExecutorBinary, "executor-binary", o.ExecutorBinary, "A k8sm-executor binary the broker serves to agents at <--executor-url-base>/executor/sha256/<its sha256>/<its name>; the ExecutorInfo names that URI (executable, cached by the agent's fetcher) and the agent runs the fetched copy, ./<its name> (--executor-command). A new binary is a new URI, hence a new executor: agents move to it as their pods end.")
	fs.StringVar(&o.ExecutorURLBase, "executor-url-base", o.ExecutorURLBase, "How Mesos agents reach --executor-bind-address, e.g. http://k8sm-broker.example.com:10352 (a name every broker replica answers, not one replica's address: the URI is part of the executor's identity).")
	fs.StringVar(&o.ExecutorBindAddress, "executor-bind-address", o.ExecutorBindAddress, "Where the broker serves --executor-binary (plain HTTP: the binary is no secret, and Mesos fetchers present no client certificate).")
	fs.StringSliceVar(&o.ExecutorURIs, "executor-uri", o.ExecutorURIs, "More URIs the agent fetches into the executor's sandbox (an executor binary hosted elsewhere, a kubeconfig): executable, not extracted, not cached.")
	fs.StringVar(&o.ExecutorSHA256, "executor-sha256", o.ExecutorSHA256, "The sha256 (hex) of the executor that --executor-uri fetches as --executor-command: the agent checks it before running it (sha256sum in the executor's shell command; Mesos' URIs carry no checksum). With --executor-binary the broker sets it itself.")
	fs.StringVar(&o.ExecutorKubeconfig, "executor-kubeconfig", o.ExecutorKubeconfig, "The kubeconfig of the executor's kubelet on the agent.")
	fs.StringVar(&o.ExecutorCRI, "executor-container-runtime-endpoint", o.ExecutorCRI, "The CRI endpoint of the kubelet on the agent, e.g. unix:///run/containerd/containerd.sock.")
	fs.StringVar(&o.ExecutorRootDir, "executor-root-dir", o.ExecutorRootDir, "The kubelet's root directory on the agent.")
	fs.StringSliceVar(&o.ExecutorArgs, "executor-arg", o.ExecutorArgs, "Extra --flag=value arguments of the executor.")
	fs.Float64Var(&o.ExecutorCPUs, "executor-cpus", o.ExecutorCPUs, "CPUs charged once per agent for the executor and its kubelet.")
	fs.Float64Var(&o.ExecutorMemMB, "executor-mem", o.ExecutorMemMB, "Memory (MB) charged once per agent for the executor and its kubelet.")
	fs.DurationVar(&o.ExecutorShutdownGrace, "executor-shutdown-grace-period", o.ExecutorShutdownGrace, "How long an agent lets the executor stop its pods (each within its terminationGracePeriodSeconds, capped at 80% of this) and remove kube-proxy's rules after SHUTDOWN before killing it (ExecutorInfo.shutdown_grace_period; overrides the agent's --executor_shutdown_grace_period, 5s by default).")

	fs = fss.FlagSet("kubernetes")
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "The kubeconfig of the broker (user system:k8sm-broker); in-cluster configuration when empty.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "QPS to use while talking with the Kubernetes API server.")
	fs.Int32Var(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst to use while talking with the Kubernetes API server.")
	fs.StringVar(&o.SchedulerName, "scheduler-name", o.SchedulerName, "The schedulerName of the pods k8sm runs.")
	fs.DurationVar(&o.NodeLeaseDuration, "node-lease-duration", o.NodeLeaseDuration, "The lease duration of the Node Leases the broker renews for agents without a kubelet.")
	fs.DurationVar(&o.AgentListInterval, "agent-list-interval", o.AgentListInterval, "How often the broker lists the master's agents (v1 operator API GET_AGENTS) to mirror as Nodes the agents that joined while it SUPPRESSed offers (it is offered nothing from them then), so that DaemonSets follow them.")
	fs.Int32Var(&o.NodeSyncWorkers, "node-sync-workers", o.NodeSyncWorkers, "How many agents' Nodes and Leases the broker writes at once. These heartbeats (one Lease renewal per agent without a kubelet every quarter of --node-lease-duration, as its kubelet would do) are not limited by --kube-api-qps, which is one client's budget, not that of the kubelets the broker stands in for.")

	fs.Int32Var(&o.PodSyncWorkers, "pod-sync-workers", o.PodSyncWorkers, "How many pods' tasks the broker kills at once (pods deleted, or being deleted on agents where no kubelet runs). A failed KILL is retried with backoff.")

	fs = fss.FlagSet("serving")
	fs.StringVar(&o.GRPCAddress, "grpc-bind-address", o.GRPCAddress, "The address of the Broker gRPC service (the scheduler plugin's). Only a loopback address may serve without mutual TLS.")
	o.GRPC.addFlags(fs)
	fs.StringVar(&o.HTTPAddress, "http-bind-address", o.HTTPAddress, "The address of /metrics, /healthz and /readyz.")
	fs.BoolVar(&o.EnablePprof, "enable-pprof", o.EnablePprof, "Serve /debug/pprof on --http-bind-address.")
	fs.StringVar(&o.MemoryLimit, "memory-limit", o.MemoryLimit, "The Go runtime's soft memory limit (runtime/debug.SetMemoryLimit), e.g. 180Mi: the heap is collected harder as it nears it instead of growing to twice the live heap. 0 turns it off. Empty: GOMEMLIMIT if set, else 90% of the container's (cgroup's) memory limit if it has one.")

	fs = fss.FlagSet("leader election")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect one leader among broker replicas in ZooKeeper; only the leader subscribes to Mesos and serves.")
	fs.StringVar(&o.ZK, "zk", o.ZK, "Where the broker keeps its state in ZooKeeper (framework id, leader election): zk://host:2181/k8sm. Defaults to the servers of a zk:// --master with path /k8sm.")
	fs.StringVar(&o.ZKCredentialsFile, "zk-credentials-file", o.ZKCredentialsFile, "A file holding user:password for ZooKeeper digest authentication (instead of zk://user:password@... in --zk, which shows in the process list). With credentials, the znodes the broker creates are readable and writable by that identity alone.")
	fs.StringVar(&o.Identity, "identity", o.Identity, "This replica's name in the leader election.")

	fs = fss.FlagSet("testing")
	fs.StringVar(&o.FailpointsDir, "failpoints-dir", o.FailpointsDir, "TESTS ONLY: a directory whose files arm failpoints, exact points of the broker's work where it SIGKILLs itself or pauses (docs/reliability.md). Empty, the default, turns them off; never set it on a real cluster.")

	logsapi.AddFlags(o.Logs, fss.FlagSet("logging"))
	return fss
}

// AddFlags adds every section to fs.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	for _, f := range o.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
}

// Validate returns every problem, each naming its flag.
func (o *Options) Validate() error {
	var errs []error
	switch {
	case o.Master == "":
		errs = append(errs, errors.New("--master is required (zk://host:2181/mesos or http://host:5050)"))
	case strings.HasPrefix(o.Master, "zk://"):
		if _, _, err := brokerzk.ParseURL(o.Master); err != nil {
			errs = append(errs, fmt.Errorf("--master: %w", err))
		}
	case strings.HasPrefix(o.Master, "http://"), strings.HasPrefix(o.Master, "https://"):
	default:
		errs = append(errs, fmt.Errorf("--master=%q must start with zk://, http:// or https://", o.Master))
	}
	if o.ZK != "" {
		if _, _, err := brokerzk.ParseURL(o.ZK); err != nil {
			errs = append(errs, fmt.Errorf("--zk: %w", err))
		}
	}
	if o.LeaderElect && o.ZK == "" && !strings.HasPrefix(o.Master, "zk://") {
		errs = append(errs, errors.New("--leader-elect needs ZooKeeper: set --zk=zk://host:2181/k8sm (or use a zk:// --master), or --leader-elect=false for a single replica"))
	}
	if _, _, err := o.zkAuth(false); err != nil {
		errs = append(errs, err)
	}
	if o.FrameworkName == "" {
		errs = append(errs, errors.New("--framework-name must not be empty"))
	}
	if len(o.Roles) == 0 {
		errs = append(errs, errors.New("--roles must name at least one role"))
	} else if o.RolePolicyFile == "" {
		if err := o.checkRolePolicy(rolepolicy.Default()); err != nil {
			errs = append(errs, err)
		}
	}
	if o.Codec != "protobuf" && o.Codec != "json" {
		errs = append(errs, fmt.Errorf("--mesos-codec=%q must be protobuf or json", o.Codec))
	}
	if o.FailoverTimeout <= 0 {
		errs = append(errs, errors.New("--failover-timeout must be positive: without it Mesos kills every pod when the broker restarts"))
	}
	if o.MissedHeartbeats < 1 {
		errs = append(errs, errors.New("--missed-heartbeats must be at least 1"))
	}
	if o.RefuseSeconds <= 0 {
		errs = append(errs, errors.New("--refuse-seconds must be positive"))
	}
	if o.DeclineAfter <= 0 || o.BatchWindow <= 0 || o.DefaultTTL <= 0 || o.MaxTTL < o.DefaultTTL {
		errs = append(errs, errors.New("--decline-after, --launch-batch-window and --reservation-ttl must be positive and --reservation-max-ttl at least --reservation-ttl"))
	}
	if o.HoldWhilePending < 0 {
		errs = append(errs, errors.New("--hold-offers-while-pending must not be negative"))
	}
	if o.TaskLaunchTimeout < 0 {
		errs = append(errs, fmt.Errorf("--task-launch-timeout=%s must not be negative (0 disables)", o.TaskLaunchTimeout))
	}
	if o.ReconcileInterval <= 0 {
		errs = append(errs, errors.New("--reconcile-interval must be positive"))
	}
	if !(o.DefaultPodCPUs >= 0.001) || !(o.DefaultPodMemMB >= 0.001) || math.IsInf(o.DefaultPodCPUs+o.DefaultPodMemMB, 0) {
		errs = append(errs, fmt.Errorf("--default-pod-cpus=%v and --default-pod-mem=%v must be positive: Mesos refuses a task without cpus and mem", o.DefaultPodCPUs, o.DefaultPodMemMB))
	}
	if o.ExecutorCommand == "" {
		errs = append(errs, errors.New("--executor-command must not be empty"))
	}
	if o.ExecutorBinary != "" {
		if want := "./" + filepath.Base(o.ExecutorBinary); o.ExecutorCommand != want {
			errs = append(errs, fmt.Errorf("--executor-command=%q: with --executor-binary the agent runs its fetched copy, %s", o.ExecutorCommand, want))
		}
		if u, err := url.Parse(o.ExecutorURLBase); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--executor-url-base=%q must be an http(s) URL agents reach --executor-bind-address at, e.g. http://k8sm-broker.example.com:10352", o.ExecutorURLBase))
		}
		if o.ExecutorBindAddress == "" {
			errs = append(errs, errors.New("--executor-bind-address must not be empty with --executor-binary"))
		}
	}
	if o.ExecutorSHA256 != "" {
		if b, err := hex.DecodeString(o.ExecutorSHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("--executor-sha256=%q must be 64 hex digits (sha256sum's output)", o.ExecutorSHA256))
		}
		if o.ExecutorBinary != "" {
			errs = append(errs, errors.New("--executor-sha256 is for an executor fetched by --executor-uri: with --executor-binary the broker hashes the binary itself"))
		}
		if len(o.ExecutorURIs) == 0 {
			errs = append(errs, errors.New("--executor-sha256 needs the --executor-uri that fetches --executor-command"))
		}
	}
	if o.ExecutorCPUs < 0 || o.ExecutorMemMB < 0 {
		errs = append(errs, errors.New("--executor-cpus and --executor-mem must not be negative"))
	}
	if o.ExecutorShutdownGrace < time.Second {
		errs = append(errs, fmt.Errorf("--executor-shutdown-grace-period=%s is too short: the executor needs at least 1s to stop its pods and remove kube-proxy's rules (default 45s)", o.ExecutorShutdownGrace))
	}
	if o.KubeAPIQPS <= 0 || math.IsInf(float64(o.KubeAPIQPS), 0) || math.IsNaN(float64(o.KubeAPIQPS)) {
		// client-go reads 0 as its default of 5 and a negative value as no
		// limit at all; neither is what a user setting the flag means.
		errs = append(errs, fmt.Errorf("--kube-api-qps=%v must be a positive number", o.KubeAPIQPS))
	}
	if o.KubeAPIBurst < 1 {
		errs = append(errs, fmt.Errorf("--kube-api-burst=%d must be at least 1", o.KubeAPIBurst))
	}
	if o.NodeSyncWorkers < 1 {
		errs = append(errs, fmt.Errorf("--node-sync-workers=%d must be at least 1", o.NodeSyncWorkers))
	}
	if o.PodSyncWorkers < 1 {
		errs = append(errs, fmt.Errorf("--pod-sync-workers=%d must be at least 1", o.PodSyncWorkers))
	}
	if o.AgentListInterval <= 0 {
		errs = append(errs, fmt.Errorf("--agent-list-interval=%v must be positive", o.AgentListInterval))
	}
	if o.NodeLeaseDuration < 4*time.Second {
		errs = append(errs, fmt.Errorf("--node-lease-duration=%v must be at least 4s (Leases are renewed every quarter of it)", o.NodeLeaseDuration))
	}
	if o.SchedulerName == "" {
		errs = append(errs, errors.New("--scheduler-name must not be empty"))
	}
	if o.MemoryLimit != "" {
		if _, _, err := memoryLimit(o.MemoryLimit, "", ""); err != nil {
			errs = append(errs, err)
		}
	}
	if o.GRPCAddress == "" {
		errs = append(errs, errors.New("--grpc-bind-address must not be empty"))
	}
	errs = append(errs, o.GRPC.validate(o.GRPCAddress)...)
	if o.SecretFile != "" && o.Principal == "" {
		errs = append(errs, errors.New("--secret-file needs --principal"))
	}
	if o.MasterCAFile != "" && strings.HasPrefix(o.Master, "http://") {
		errs = append(errs, fmt.Errorf("--master-ca-file is for masters serving https: use --master=https://%s", strings.TrimPrefix(o.Master, "http://")))
	}
	if o.LeaderElect && o.Identity == "" {
		errs = append(errs, errors.New("--identity must not be empty with --leader-elect"))
	}
	return errors.Join(errs...)
}

// checkRolePolicy refuses a role policy under which no pod could use any of
// the framework's roles: a broker that could place nothing. Validate checks
// the built-in policy; Config, which reads files, a --role-policy-file.
func (o *Options) checkRolePolicy(p *rolepolicy.Policy) error {
	for _, r := range o.Roles {
		if p.Grants(r) {
			return nil
		}
	}
	return fmt.Errorf("--roles=%s: %s lets no namespace use any of them; give --role-policy-file a policy whose defaultRole or rules name one", strings.Join(o.Roles, ","), p)
}
