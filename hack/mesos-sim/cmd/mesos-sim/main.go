// Command mesos-sim runs a protocol-faithful Mesos master (or several, elected
// through ZooKeeper) and agents in one process, with flags named like
// mesos-master's and mesos-agent's. It is what `make up` runs by default.
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	mesostime "github.com/mesos/mesos-go/api/v1/lib/time"
	"k8s.io/klog/v2"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/containment"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
)

// duration accepts Mesos's format ("5secs", "15mins") as well as Go's ("5s").
type duration struct{ d *time.Duration }

func (d duration) String() string {
	if d.d == nil {
		return ""
	}
	return master.FormatDuration(*d.d)
}

func (d duration) Set(s string) error {
	if v, err := mesostime.ParseDuration(s); err == nil {
		*d.d = v
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 5secs, 100ms, 15mins)", s)
	}
	*d.d = v
	return nil
}

type options struct {
	fetcherCacheDir, frameworksHome                                                   string
	ip, hostname, zk, workDir, resources, attributes, agentIP, agentHostname, execEnv string
	agentsFile                                                                        string
	credentials, httpFrameworkAuthenticators                                          string
	authenticateHTTPFrameworks                                                        bool
	port, masters, agents, agentPort, controlPort, maxPingTimeouts                    int
	hollow                                                                            bool
	hollowNoCheckpoint                                                                bool
	containerizer                                                                     containment.Config
	offerTimeout, allocInterval, heartbeat, pingTimeout                               time.Duration
	graceShutdown, recoveryTimeout, reregTimeout, regTimeout, updateRetry             time.Duration
}

const usageHeader = `Usage: mesos-sim [options]

Runs Mesos masters and agents speaking the real v1 HTTP APIs (scheduler API
on the master at /api/v1/scheduler, executor API on each agent at
/api/v1/executor, /master/state and /state), launching executors as real
child processes. Flags follow mesos-master and mesos-agent; each flag can also
be given as an environment variable MESOS_<FLAG> (e.g. MESOS_PORT=5050).

Durations take the Mesos form (5secs, 100ms, 15mins) or Go's (5s).

TLS as libprocess configures it, from the environment: LIBPROCESS_SSL_ENABLED=true
with LIBPROCESS_SSL_CERT_FILE and LIBPROCESS_SSL_KEY_FILE makes the masters serve
https only.

Options:
`

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("mesos-sim", flag.ContinueOnError)
	klogNames := map[string]bool{}
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprint(out, usageHeader)
		var logging []string
		fs.VisitAll(func(f *flag.Flag) {
			if klogNames[f.Name] {
				logging = append(logging, "--"+f.Name)
				return
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" {
				def = " (default: " + f.DefValue + ")"
			}
			fmt.Fprintf(out, "  --%s\n      %s%s\n", f.Name, f.Usage, def)
		})
		fmt.Fprintf(out, "\nLogging (klog): %s\n", strings.Join(logging, " "))
		fmt.Fprint(out, `
Fault API (with --control_port): POST /agents/{i}/kill|restart|start|partition|heal|unreachable,
POST /master/failover, POST /offers/{id}/rescind, POST /calls/{TYPE}/drop?count=N,
POST /calls/{TYPE}/delay?duration=2s, POST /calls/clear, GET /cluster.
`)
	}
	// Master flags.
	fs.StringVar(&o.ip, "ip", "127.0.0.1", "IP address the master listens on")
	fs.IntVar(&o.port, "port", 5050, "port the (first) master listens on; 0 picks a free port")
	fs.StringVar(&o.hostname, "hostname", "localhost", "hostname the master advertises (used in redirects and MasterInfo)")
	fs.StringVar(&o.zk, "zk", "", "ZooKeeper URL zk://host1:port1,host2:port2/path for master election and detection")
	fs.IntVar(&o.masters, "masters", 1, "number of masters to run (more than one needs --zk)")
	o.offerTimeout = 0
	fs.Var(duration{&o.offerTimeout}, "offer_timeout", "rescind offers not used within this long (default: never)")
	o.allocInterval = master.DefaultAllocationInterval
	fs.Var(duration{&o.allocInterval}, "allocation_interval", "time between allocation cycles")
	o.heartbeat = master.DefaultHeartbeatInterval
	fs.Var(duration{&o.heartbeat}, "heartbeat_interval", "interval of HEARTBEAT events to schedulers (the real master's fixed 15secs)")
	o.pingTimeout = master.DefaultAgentPingTimeout
	fs.Var(duration{&o.pingTimeout}, "agent_ping_timeout", "time an agent has to answer a health check ping")
	fs.IntVar(&o.maxPingTimeouts, "max_agent_ping_timeouts", master.DefaultMaxAgentPingTimeouts, "missed pings before an agent is declared unreachable")
	fs.BoolVar(&o.authenticateHTTPFrameworks, "authenticate_http_frameworks", false, "refuse scheduler API requests without a valid principal and secret (HTTP 401); needs --http_framework_authenticators=basic and --credentials")
	fs.StringVar(&o.httpFrameworkAuthenticators, "http_framework_authenticators", "", "HTTP framework authenticator: basic (the only one)")
	fs.StringVar(&o.credentials, "credentials", "", `JSON file of principals and secrets, {"credentials":[{"principal":"k8sm","secret":"..."}]}`)
	// Agent flags.
	fs.IntVar(&o.agents, "agents", 1, "number of agents to run")
	fs.StringVar(&o.agentIP, "agent_ip", "127.0.0.1", "IP address agents listen on (MESOS_AGENT_ENDPOINT of executors)")
	fs.IntVar(&o.agentPort, "agent_port", 0, "port of the first agent, the next agents use the following ports; 0 picks free ports")
	fs.StringVar(&o.agentHostname, "agent_hostname", "", "hostname prefix of agents (agent i is <prefix>-i; default agent-i)")
	fs.StringVar(&o.resources, "resources", "cpus:4;mem:8192;disk:65536;ports:[31000-32000]", "resources of each agent; cpus(role):2 is a static reservation")
	fs.StringVar(&o.attributes, "attributes", "", "attributes of each agent, e.g. rack:r1;zone:a")
	fs.StringVar(&o.workDir, "work_dir", "", "directory for sandboxes and checkpoints (default: a temporary directory)")
	fs.StringVar(&o.containerizer.Launcher, "launcher", containment.LauncherPosix, "how executors are launched and destroyed: posix (own process group; what they start may outlive them) or linux (own cgroups per container: freezer, plus the hierarchies of --isolation; everything in them killed when the executor exits; cgroup v1, root). Real Mesos picks linux when it can; the sim defaults to posix")
	fs.StringVar(&o.containerizer.Isolation, "isolation", "posix/cpu,posix/mem", "isolators: posix/cpu, posix/mem, and with --launcher=linux cgroups/cpu, cgroups/mem, cgroups/pids (a cgroup of the container in those hierarchies; no limits are set)")
	fs.StringVar(&o.containerizer.CgroupsRoot, "cgroups_root", containment.DefaultCgroupsRoot, "with --launcher=linux: the cgroup under which each container gets <cgroups_root>/<container id>; give each agent of one sim process its own (agents file)")
	fs.BoolVar(&o.hollow, "hollow", false, "run hollow agents: launches answer TASK_RUNNING without starting executors (scale tests only)")
	fs.BoolVar(&o.hollowNoCheckpoint, "hollow_no_checkpoint", false, "with --hollow: keep the agents' executor state in memory only, writing no checkpoint per task (benchmarks; a restarted agent recovers nothing)")
	o.graceShutdown = agent.DefaultExecutorShutdownGracePeriod
	fs.Var(duration{&o.graceShutdown}, "executor_shutdown_grace_period", "time an executor gets after SHUTDOWN before SIGKILL")
	o.recoveryTimeout = agent.DefaultRecoveryTimeout
	fs.Var(duration{&o.recoveryTimeout}, "recovery_timeout", "MESOS_RECOVERY_TIMEOUT given to checkpointing executors")
	o.reregTimeout = agent.DefaultExecutorReregistrationTimeout
	fs.Var(duration{&o.reregTimeout}, "executor_reregistration_timeout", "time recovered executors have to re-subscribe after an agent restart")
	o.regTimeout = agent.DefaultExecutorRegistrationTimeout
	fs.Var(duration{&o.regTimeout}, "executor_registration_timeout", "time a launched executor has to subscribe")
	o.updateRetry = agent.DefaultStatusUpdateRetryInterval
	fs.Var(duration{&o.updateRetry}, "status_update_retry_interval", "first resend interval of unacknowledged status updates (doubles up to 10mins)")
	fs.StringVar(&o.fetcherCacheDir, "fetcher_cache_dir", "", "directory of the fetcher cache, cleared at start; with several agents each has <dir>/agent-<i> (default: <work_dir of the agent>/fetch)")
	fs.StringVar(&o.frameworksHome, "frameworks_home", "", "directory prepended to relative executor URIs")
	fs.StringVar(&o.execEnv, "executor_environment_variables", "", `JSON object of environment variables for executors, e.g. {"PATH":"/bin"}`)
	fs.StringVar(&o.agentsFile, "agents_file", "", "JSON file with one object per agent, each holding that agent's own mesos-agent flags (hostname, ip, port, resources, attributes, work_dir, executor_environment_variables; netns: the network namespace standing in for its machine); replaces --agents, unset fields take the flags above")
	fs.IntVar(&o.controlPort, "control_port", 0, "port of the fault-injection HTTP API (0: disabled)")
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	klogFlags.VisitAll(func(f *flag.Flag) {
		klogNames[f.Name] = true
		fs.Var(f.Value, f.Name, f.Usage)
	})

	// MESOS_<FLAG> environment variables, as the real binaries read them.
	set := map[string]bool{}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v, ok := os.LookupEnv("MESOS_" + strings.ToUpper(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("MESOS_%s: %w", strings.ToUpper(f.Name), err)
			}
		}
	})
	return o, envErr
}

func config(o *options) (mesossim.Config, error) {
	res, err := mesossim.ParseResources(o.resources)
	if err != nil {
		return mesossim.Config{}, fmt.Errorf("--resources: %w", err)
	}
	attrs, err := mesossim.ParseAttributes(o.attributes)
	if err != nil {
		return mesossim.Config{}, fmt.Errorf("--attributes: %w", err)
	}
	var env map[string]string
	if o.execEnv != "" {
		if err := json.Unmarshal([]byte(o.execEnv), &env); err != nil {
			return mesossim.Config{}, fmt.Errorf("--executor_environment_variables: %w", err)
		}
	}
	cfg := mesossim.Config{
		Masters: o.masters,
		ZK:      o.zk,
		WorkDir: o.workDir,
		Master: master.Config{
			Hostname: o.hostname, IP: o.ip, Port: o.port,
			HeartbeatInterval: o.heartbeat, AllocationInterval: o.allocInterval, OfferTimeout: o.offerTimeout,
			AgentPingTimeout: o.pingTimeout, MaxAgentPingTimeouts: o.maxPingTimeouts,
		},
	}
	if cfg.Master.Credentials, err = frameworkCredentials(o); err != nil {
		return mesossim.Config{}, err
	}
	if cfg.Master.TLS, cfg.Master.TLSDowngrade, err = libprocessTLS(); err != nil {
		return mesossim.Config{}, err
	}
	var files []agentFlags
	n := o.agents
	if o.agentsFile != "" {
		if files, err = readAgentsFile(o.agentsFile); err != nil {
			return mesossim.Config{}, err
		}
		n = len(files)
	}
	for i := 0; i < n; i++ {
		ac := agent.Config{
			IP: o.agentIP, Resources: res, Attributes: attrs, Hollow: o.hollow, HollowNoCheckpoint: o.hollowNoCheckpoint,
			ExecutorShutdownGracePeriod: o.graceShutdown, RecoveryTimeout: o.recoveryTimeout,
			ExecutorReregistrationTimeout: o.reregTimeout, ExecutorRegistrationTimeout: o.regTimeout,
			StatusUpdateRetryInterval: o.updateRetry, ExecutorEnvironment: env,
			FrameworksHome: o.frameworksHome, FetcherCacheDir: o.fetcherCacheDir,
			Containerizer: o.containerizer,
		}
		if o.fetcherCacheDir != "" && n > 1 {
			ac.FetcherCacheDir = filepath.Join(o.fetcherCacheDir, "agent-"+strconv.Itoa(i))
		}
		if o.agentHostname != "" {
			ac.Hostname = o.agentHostname + "-" + strconv.Itoa(i)
		}
		if o.agentPort != 0 {
			ac.Port = o.agentPort + i
		}
		if files != nil {
			if err := files[i].apply(&ac); err != nil {
				return mesossim.Config{}, fmt.Errorf("--agents_file %s, agent %d: %w", o.agentsFile, i, err)
			}
		}
		if files != nil && files[i].Standby {
			cfg.StandbyAgents = append(cfg.StandbyAgents, ac)
			continue
		}
		if len(cfg.StandbyAgents) > 0 {
			return mesossim.Config{}, fmt.Errorf("--agents_file %s, agent %d: list standby agents after the others (the fault API numbers them on after the agents started)", o.agentsFile, i)
		}
		cfg.Agents = append(cfg.Agents, ac)
	}
	return cfg, nil
}

// agentFlags is one agent of --agents_file: the flags a real mesos-agent of
// that name takes, spelled as on its command line. Real Mesos runs one
// mesos-agent process per machine, each with flags of its own; in one sim
// process this file is how agents differ (names, resources, attributes and
// the environment their executors get).
type agentFlags struct {
	Hostname        string            `json:"hostname"`
	IP              string            `json:"ip"`
	Port            int               `json:"port"`
	Resources       string            `json:"resources"`
	Attributes      string            `json:"attributes"`
	WorkDir         string            `json:"work_dir"`
	FetcherCacheDir string            `json:"fetcher_cache_dir"`
	ExecEnv         map[string]string `json:"executor_environment_variables"`
	Launcher        string            `json:"launcher"`
	Isolation       string            `json:"isolation"`
	CgroupsRoot     string            `json:"cgroups_root"`
	// NetNS is not a mesos-agent flag: it is the machine. The agent listens
	// and runs its executors in this network namespace (/run/netns/<name>).
	NetNS string `json:"netns"`
	// Standby is not a mesos-agent flag either: the machine is ready but
	// its mesos-agent is not started until the fault API's
	// POST /agents/{i}/start, so that an agent can join a running cluster.
	Standby bool `json:"standby"`
}

func readAgentsFile(path string) ([]agentFlags, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--agents_file: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	// A misspelt flag must not vanish silently.
	dec.DisallowUnknownFields()
	var out []agentFlags
	if err := dec.Decode(&out); err != nil {
		return nil, fmt.Errorf("--agents_file %s: want a JSON list of agents: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--agents_file %s lists no agent", path)
	}
	return out, nil
}

// apply overrides the shared flags with the ones this agent sets.
func (f agentFlags) apply(ac *agent.Config) error {
	if f.Hostname != "" {
		ac.Hostname = f.Hostname
	}
	if f.IP != "" {
		ac.IP = f.IP
	}
	if f.Port != 0 {
		ac.Port = f.Port
	}
	if f.Resources != "" {
		res, err := mesossim.ParseResources(f.Resources)
		if err != nil {
			return fmt.Errorf("resources: %w", err)
		}
		ac.Resources = res
	}
	if f.Attributes != "" {
		attrs, err := mesossim.ParseAttributes(f.Attributes)
		if err != nil {
			return fmt.Errorf("attributes: %w", err)
		}
		ac.Attributes = attrs
	}
	if f.WorkDir != "" {
		ac.WorkDir = f.WorkDir
	}
	if f.FetcherCacheDir != "" {
		ac.FetcherCacheDir = f.FetcherCacheDir
	}
	ac.NetNS = f.NetNS
	if f.Launcher != "" {
		ac.Containerizer.Launcher = f.Launcher
	}
	if f.Isolation != "" {
		ac.Containerizer.Isolation = f.Isolation
	}
	if f.CgroupsRoot != "" {
		ac.Containerizer.CgroupsRoot = f.CgroupsRoot
	}
	if f.ExecEnv != nil {
		// As mesos-agent's flag: the agent's own value replaces the shared one.
		ac.ExecutorEnvironment = f.ExecEnv
	}
	return nil
}

// frameworkCredentials checks the authentication flags as mesos-master
// does at start (a missing authenticator or credentials file ends it).
func frameworkCredentials(o *options) (map[string]string, error) {
	if !o.authenticateHTTPFrameworks {
		return nil, nil
	}
	switch o.httpFrameworkAuthenticators {
	case "":
		return nil, errors.New("missing `--http_framework_authenticators` flag. This must be used in conjunction with `--authenticate_http_frameworks`")
	case "basic":
	default:
		return nil, fmt.Errorf("--http_framework_authenticators=%q: mesos-sim has only the basic authenticator", o.httpFrameworkAuthenticators)
	}
	if o.credentials == "" {
		return nil, fmt.Errorf("no credentials provided for the default 'basic' HTTP authenticator for realm '%s' (see --credentials flag)", master.FrameworkRealm)
	}
	return master.ReadCredentials(o.credentials)
}

// libprocessTLS reads libprocess' SSL environment: with
// LIBPROCESS_SSL_ENABLED=true the masters serve TLS with the given
// certificate and key, and with LIBPROCESS_SSL_SUPPORT_DOWNGRADE=true plain
// http on the same port as well.
func libprocessTLS() (*tls.Config, bool, error) {
	enabled, err := envBool("LIBPROCESS_SSL_ENABLED")
	if err != nil || !enabled {
		return nil, false, err
	}
	downgrade, err := envBool("LIBPROCESS_SSL_SUPPORT_DOWNGRADE")
	if err != nil {
		return nil, false, err
	}
	certFile, keyFile := os.Getenv("LIBPROCESS_SSL_CERT_FILE"), os.Getenv("LIBPROCESS_SSL_KEY_FILE")
	if certFile == "" || keyFile == "" {
		return nil, false, errors.New("LIBPROCESS_SSL_ENABLED=true needs LIBPROCESS_SSL_CERT_FILE and LIBPROCESS_SSL_KEY_FILE")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, false, fmt.Errorf("LIBPROCESS_SSL_CERT_FILE/LIBPROCESS_SSL_KEY_FILE: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, downgrade, nil
}

func envBool(name string) (bool, error) {
	switch v := os.Getenv(name); strings.ToLower(v) {
	case "", "false", "0":
		return false, nil
	case "true", "1":
		return true, nil
	default:
		return false, fmt.Errorf("%s=%q must be true or false", name, v)
	}
}

func run(ctx context.Context, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	cfg, err := config(o)
	if err != nil {
		return err
	}
	s, err := mesossim.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if o.controlPort != 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort(o.ip, strconv.Itoa(o.controlPort)))
		if err != nil {
			return fmt.Errorf("listening for the fault API: %w", err)
		}
		srv := &http.Server{Handler: s.ControlHandler()}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		klog.InfoS("Fault API listening", "address", ln.Addr().String())
	}
	klog.InfoS("mesos-sim running", "master", s.MasterURL(), "agents", len(cfg.Agents), "hollow", o.hollow)
	<-ctx.Done()
	klog.InfoS("mesos-sim shutting down")
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "mesos-sim:", err)
		os.Exit(1)
	}
}
