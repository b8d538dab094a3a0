package cluster

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/manifests"
)

// The Mesos side of the local cluster: mesos-sim (master + agents, each
// agent with a containerd of its own), the broker and the k8sm scheduler.

// MesosZK is the ZooKeeper URL under which the Mesos master registers and
// where the broker finds it.
func (c Config) MesosZK() string { return fmt.Sprintf("zk://%s/mesos", c.ZooKeeperAddr()) }

// MesosMasterURL is the master's HTTP address (/master/state, /api/v1/scheduler).
func (c Config) MesosMasterURL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.MesosPort) }

// SimControlURL is mesos-sim's fault-injection API (POST /agents/{i}/kill|restart, …).
func (c Config) SimControlURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.MesosControlPort)
}

// BrokerMetricsURL is the broker's /metrics.
func (c Config) BrokerMetricsURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", c.BrokerHTTPPort)
}

// BrokerAddr is the broker's gRPC address (the scheduler plugin's).
func (c Config) BrokerAddr() string { return fmt.Sprintf("127.0.0.1:%d", c.BrokerGRPCPort) }

// AgentName is the hostname of agent i (1-based): the name of its Node.
func (c Config) AgentName(i int) string { return fmt.Sprintf("k8sm-agent-%d", i) }

// machines is the number of agents' machines: the agents started at once
// and the standby ones.
func (c Config) machines() int { return c.Agents + c.StandbyAgents }

// AgentNames are the Node names of every agent, in order.
func (c Config) AgentNames() []string {
	var out []string
	for i := 1; i <= c.Agents; i++ {
		out = append(out, c.AgentName(i))
	}
	return out
}

// AgentZone is the Mesos attribute "zone" of agent i: a, b, c, …, so that
// node selectors have something to choose between
// (label k8sm.io/attribute-zone on the Node).
func (c Config) AgentZone(i int) string { return string(rune('a' + (i-1)%26)) }

// agentDir holds everything of agent i: its containerd, its kubelet's root
// and its Mesos work dir. The name is short on purpose: the kubelet puts
// unix sockets below it, whose paths may not exceed 107 bytes.
func (c Config) agentDir(i int) string { return filepath.Join(c.StateDir, fmt.Sprintf("a%d", i)) }

// AgentContainerdSocket is the CRI socket of agent i's containerd.
func (c Config) AgentContainerdSocket(i int) string {
	return filepath.Join(c.shortPath(fmt.Sprintf("a%d", i), "containerd"), "containerd.sock")
}

// AgentKubeletRootDir is the root directory of agent i's kubelet.
// It is spelled through runDir: the kubelet makes unix sockets below it.
func (c Config) AgentKubeletRootDir(i int) string {
	return c.shortPath(fmt.Sprintf("a%d", i), "kubelet")
}

// AgentHostPorts is the host port range agent i offers: all of
// AgentPortsBegin-AgentPortsEnd, since every agent is a host of its own.
func (c Config) AgentHostPorts(i int) (begin, end int) {
	return c.AgentPortsBegin, c.AgentPortsEnd
}

// cgroupParent is the cgroup below which the agents' kubelets put pods.
func (c Config) cgroupParent() string {
	if c.CgroupParent != "" {
		return c.CgroupParent
	}
	sum := sha256.Sum256([]byte(c.StateDir))
	return "/k8sm-" + hex.EncodeToString(sum[:4])
}

// AgentCgroupRoot is agent i's --cgroups_root: its executors' containers
// are its children, and their kubelets put the pods under them.
func (c Config) AgentCgroupRoot(i int) string { return c.cgroupParent() + "/" + c.AgentName(i) }

// AdminKubeconfig is the cluster admin's kubeconfig (kubectl's).
func (c Config) AdminKubeconfig() string { return c.PKI().Kubeconfig("admin") }

// mesosComponents are the processes of the Mesos side, in start order.
func mesosComponents(c Config) []component {
	if c.Agents <= 0 {
		return nil
	}
	var out []component
	for i := 1; i <= c.machines(); i++ {
		i := i
		out = append(out, component{name: agentContainerdName(c.AgentName(i)), start: func(ctx context.Context, c Config) (*Process, error) {
			return startContainerdIn(ctx, c, agentContainerdName(c.AgentName(i)), filepath.Join(c.agentDir(i), "containerd"), filepath.Dir(c.AgentContainerdSocket(i)),
				podNetwork{netns: c.AgentNetNS(i), bridge: agentBridge, fromNode: true})
		}})
	}
	return append(out,
		component{name: "mesos-sim", start: startMesosSim},
		component{name: "k8sm-broker", start: startBroker},
		component{name: "kube-scheduler", start: startScheduler},
	)
}

func agentContainerdName(node string) string { return "containerd-" + node }

// executorEnv is what agent i's mesos-agent gives its executors
// (--executor_environment_variables): the broker's ExecutorInfo is one for
// all agents, so everything that differs per node comes this way, as the
// K8SM_* defaults of k8sm-executor's flags.
func (c Config) executorEnv(i int) (map[string]string, error) {
	node := c.AgentName(i)
	pki := c.PKI()
	nodeIP := c.AgentIP(i)
	kubeconfig, err := pki.NodeCredentials(node, c.agentAPIServerURL(), nodeIP)
	if err != nil {
		return nil, err
	}
	cert, key := pki.NodeServingCert(node)
	env := map[string]string{
		"K8SM_NODE_NAME":                  node,
		"K8SM_KUBECONFIG":                 kubeconfig,
		"K8SM_CONTAINER_RUNTIME_ENDPOINT": "unix://" + c.AgentContainerdSocket(i),
		"K8SM_ROOT_DIR":                   c.AgentKubeletRootDir(i),
		"K8SM_KUBELET_PORT":               strconv.Itoa(c.KubeletPort),
		"K8SM_KUBELET_ADDRESS":            nodeIP,
		"K8SM_NODE_IP":                    nodeIP,
		"K8SM_TLS_CERT_FILE":              cert,
		"K8SM_TLS_PRIVATE_KEY_FILE":       key,
		"K8SM_CLIENT_CA_FILE":             pki.CACert(),
		// Routes to the other agents' pods, as flannel's host-gw.
		"K8SM_POD_NETWORK":  "host-gw",
		"K8SM_CLUSTER_CIDR": c.PodSubnet,
		// Services for its pods: the stock kube-proxy beside the kubelet.
		"K8SM_PROXY_MODE": "iptables",
		// Pods resolve through the cluster DNS (DeployDNS).
		"K8SM_CLUSTER_DNS":    c.DNSServiceIP(),
		"K8SM_CLUSTER_DOMAIN": DNSDomain,
	}
	if r := systemReserved(c.AgentResources); r != "" {
		env["K8SM_SYSTEM_RESERVED"] = r
	}
	return env, nil
}

// systemReserved is what the kubelet must keep out of the Node's
// allocatable so that it equals the agent's resources: the kubelet measures
// the whole host, the agent offers only a part of it.
func systemReserved(resources string) string {
	var cpus, memMB float64
	for _, r := range strings.Split(resources, ";") {
		name, val, ok := strings.Cut(r, ":")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch strings.TrimSpace(name) {
		case "cpus":
			cpus = f
		case "mem":
			memMB = f
		}
	}
	var parts []string
	if cpus > 0 {
		if milli := runtime.NumCPU()*1000 - int(cpus*1000); milli > 0 {
			parts = append(parts, fmt.Sprintf("cpu=%dm", milli))
		}
	}
	if total := memTotalKiB(); memMB > 0 && total > 0 {
		if kib := total - int64(memMB*1024); kib > 0 {
			parts = append(parts, fmt.Sprintf("memory=%dKi", kib))
		}
	}
	return strings.Join(parts, ",")
}

// memTotalKiB is the host's memory as the kubelet's cAdvisor counts it.
func memTotalKiB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			n, _ := strconv.ParseInt(fields[1], 10, 64)
			return n
		}
	}
	return 0
}

// agentsFileEntry is one agent of mesos-sim's --agents_file: that agent's
// own mesos-agent flags.
type agentsFileEntry struct {
	Hostname   string            `json:"hostname"`
	Port       int               `json:"port"`
	Resources  string            `json:"resources"`
	Attributes string            `json:"attributes"`
	WorkDir    string            `json:"work_dir"`
	ExecEnv    map[string]string `json:"executor_environment_variables"`
	IP         string            `json:"ip"`
	NetNS      string            `json:"netns"`
	Standby    bool              `json:"standby,omitempty"`
	// The Mesos containerizer of a real agent on these hosts: each executor
	// in cgroups of its own, destroyed with everything in them (its pods)
	// when it exits.
	Launcher    string `json:"launcher"`
	Isolation   string `json:"isolation"`
	CgroupsRoot string `json:"cgroups_root"`
}

func startMesosSim(ctx context.Context, c Config) (*Process, error) {
	bin, err := c.bin("mesos-sim")
	if err != nil {
		return nil, err
	}
	if _, err := c.bin("k8sm-executor"); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		what string
		port int
		env  string
	}{{"the Mesos master", c.MesosPort, "K8SM_MESOS_PORT"}, {"mesos-sim's control API", c.MesosControlPort, "K8SM_MESOS_CONTROL_PORT"}} {
		if err := checkPortFree(p.what, p.port, p.env); err != nil {
			return nil, err
		}
	}
	// Agents and their kubelets listen in namespaces of their own, where
	// nothing else runs: their ports need no check here.
	// The Mesos containerizer of a real agent here (cgroup v1): each
	// executor in a container whose end takes its pods along. mesos-sim
	// models it on cgroup v1 only; elsewhere pods outlive a killed executor.
	launcher, isolation := "linux", "cgroups/cpu,cgroups/mem,cgroups/pids"
	if _, err := os.Stat("/sys/fs/cgroup/freezer/cgroup.procs"); err != nil {
		launcher, isolation = "posix", ""
		klog.InfoS("No cgroup v1 freezer hierarchy: the agents run their executors with the posix launcher, so a killed executor's pods outlive it")
	}
	var agents []agentsFileEntry
	for i := 1; i <= c.machines(); i++ {
		env, err := c.executorEnv(i)
		if err != nil {
			return nil, err
		}
		begin, end := c.AgentHostPorts(i)
		agents = append(agents, agentsFileEntry{
			Hostname:   c.AgentName(i),
			IP:         c.AgentIP(i),
			Port:       c.MesosAgentPort,
			NetNS:      netnsPath(c.AgentNetNS(i)),
			Resources:  fmt.Sprintf("%s;ports:[%d-%d]", c.AgentResources, begin, end),
			Attributes: "zone:" + c.AgentZone(i),
			WorkDir:    filepath.Join(c.agentDir(i), "mesos"),
			ExecEnv:    env,
			Standby:    i > c.Agents,
			Launcher:   launcher, Isolation: isolation,
			CgroupsRoot: strings.TrimPrefix(c.AgentCgroupRoot(i), "/"),
		})
	}
	// The executors read every Node (their pod network's routes) and, for
	// their kube-proxies, the Services' EndpointSlices and ServiceCIDRs.
	if err := c.applyManifest(ctx, "node-rbac.yaml"); err != nil {
		return nil, err
	}
	dir := filepath.Join(c.StateDir, "mesos")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(agents, "", "  ")
	if err != nil {
		return nil, err
	}
	agentsFile := filepath.Join(dir, "agents.json")
	if err := os.WriteFile(agentsFile, b, 0o644); err != nil {
		return nil, fmt.Errorf("writing %s: %w", agentsFile, err)
	}
	// Whatever cgroup the kubelets make is removed by `down`: remember it.
	if err := os.WriteFile(filepath.Join(c.StateDir, "cgroup-parent"), []byte(c.cgroupParent()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("recording the cgroup parent: %w", err)
	}
	credentials, err := c.ensureMesosCredentials()
	if err != nil {
		return nil, err
	}
	cert, key := c.PKI().MesosMasterServing()
	// TLS as libprocess sets it up; the downgrade keeps plain http open on
	// the same port for the read-only endpoints that tests and people curl
	// (the broker uses https).
	tlsEnv := []string{"LIBPROCESS_SSL_ENABLED=true", "LIBPROCESS_SSL_SUPPORT_DOWNGRADE=true",
		"LIBPROCESS_SSL_CERT_FILE=" + cert, "LIBPROCESS_SSL_KEY_FILE=" + key}
	p, err := startProcess("mesos-sim", c.StateDir, tlsEnv, bin,
		"--authenticate_http_frameworks",
		"--http_framework_authenticators=basic",
		"--credentials="+credentials,
		"--ip=127.0.0.1",
		"--hostname=127.0.0.1",
		"--port="+strconv.Itoa(c.MesosPort),
		"--zk="+c.MesosZK(),
		"--work_dir="+dir,
		"--agents_file="+agentsFile,
		"--control_port="+strconv.Itoa(c.MesosControlPort),
		// An agent that stops answering is unreachable after 15 s rather
		// than the real master's default 75 s (15secs x 5): a local
		// cluster should show agent loss while someone is watching.
		"--agent_ping_timeout=5secs",
		"--max_agent_ping_timeouts=3",
		"--v=1",
	)
	if err != nil {
		return nil, err
	}
	probe := func(ctx context.Context) error {
		return mesosAgentsRegistered(ctx, c.MesosMasterURL(), c.Agents)
	}
	if err := waitHealthy(ctx, p, time.Minute, probe); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// MesosPrincipal is the broker's Mesos principal in the local cluster.
const MesosPrincipal = "k8sm"

func (c Config) mesosSecretFile() string {
	return filepath.Join(c.StateDir, "mesos", "k8sm.secret")
}

// ensureMesosCredentials writes the masters' --credentials file and the
// broker's --secret-file (a random secret, kept across restarts) and
// returns the credentials file.
func (c Config) ensureMesosCredentials() (string, error) {
	secretFile := c.mesosSecretFile()
	if err := os.MkdirAll(filepath.Dir(secretFile), 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", filepath.Dir(secretFile), err)
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil || len(secret) == 0 {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return "", fmt.Errorf("making the broker's Mesos secret: %w", err)
		}
		secret = []byte(hex.EncodeToString(b))
		if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
			return "", fmt.Errorf("writing %s: %w", secretFile, err)
		}
	}
	doc, err := json.Marshal(map[string]any{"credentials": []map[string]string{{"principal": MesosPrincipal, "secret": string(secret)}}})
	if err != nil {
		return "", err
	}
	credentials := filepath.Join(filepath.Dir(secretFile), "credentials.json")
	if err := os.WriteFile(credentials, doc, 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", credentials, err)
	}
	return credentials, nil
}

// mesosAgentsRegistered succeeds once the master is elected and n agents
// are active.
func mesosAgentsRegistered(ctx context.Context, masterURL string, n int) error {
	var st struct {
		ActivatedSlaves float64 `json:"activated_slaves"`
		Slaves          []struct {
			Active bool `json:"active"`
		} `json:"slaves"`
	}
	if err := getJSON(ctx, http.DefaultClient, masterURL+"/master/state", &st); err != nil {
		return err
	}
	active := 0
	for _, s := range st.Slaves {
		if s.Active {
			active++
		}
	}
	if active < n {
		return fmt.Errorf("%w: %d of %d agents active", errNotReady, active, n)
	}
	return nil
}

func startBroker(ctx context.Context, c Config) (*Process, error) {
	bin, err := c.bin("k8sm-broker")
	if err != nil {
		return nil, err
	}
	exe, err := c.bin("k8sm-executor")
	if err != nil {
		return nil, err
	}
	if err := checkPortFree("the broker's gRPC API", c.BrokerGRPCPort, "K8SM_BROKER_GRPC_PORT"); err != nil {
		return nil, err
	}
	if err := checkPortFree("the broker's metrics", c.BrokerHTTPPort, "K8SM_BROKER_HTTP_PORT"); err != nil {
		return nil, err
	}
	if err := checkPortFree("the broker's executor download", c.BrokerExecutorPort, "K8SM_BROKER_EXECUTOR_PORT"); err != nil {
		return nil, err
	}
	if err := c.applyManifest(ctx, "broker-rbac.yaml"); err != nil {
		return nil, err
	}
	if err := c.applyManifest(ctx, "host-private.yaml"); err != nil {
		return nil, err
	}
	if err := c.applyManifest(ctx, "task-finalizer.yaml"); err != nil {
		return nil, err
	}
	policy, err := c.writeRolePolicy()
	if err != nil {
		return nil, err
	}
	zkCreds, err := c.PKI().BrokerZKCredentials()
	if err != nil {
		return nil, err
	}
	cert, key := c.PKI().BrokerServing()
	p, err := startProcess("k8sm-broker", c.StateDir, nil, bin,
		"--master="+c.MesosZK(),
		// Framework authentication over TLS, as against masters with
		// --authenticate_http_frameworks and LIBPROCESS_SSL_ENABLED.
		"--principal="+MesosPrincipal,
		"--secret-file="+c.mesosSecretFile(),
		"--master-ca-file="+c.PKI().CACert(),
		"--role-policy-file="+policy,
		// Its znodes (framework id, election) are its alone.
		"--zk-credentials-file="+zkCreds,
		"--grpc-tls-cert-file="+cert,
		"--grpc-tls-private-key-file="+key,
		"--grpc-client-ca-file="+c.PKI().CACert(),
		"--grpc-allowed-clients="+SchedulerGRPCIdentity,
		"--zk="+fmt.Sprintf("zk://%s/k8sm", c.ZooKeeperAddr()),
		"--kubeconfig="+c.PKI().Kubeconfig("k8sm-broker"),
		"--grpc-bind-address="+c.BrokerAddr(),
		"--http-bind-address="+fmt.Sprintf("127.0.0.1:%d", c.BrokerHTTPPort),
		"--identity=k8sm-broker-local",
		"--framework-hostname=127.0.0.1",
		// The agents fetch the executor from the broker, by an http URI
		// naming its sha256, as on a real cluster.
		"--executor-binary="+exe,
		"--executor-bind-address="+fmt.Sprintf("127.0.0.1:%d", c.BrokerExecutorPort),
		"--executor-url-base="+fmt.Sprintf("http://127.0.0.1:%d", c.BrokerExecutorPort),
		// Per-agent settings come from each agent's
		// --executor_environment_variables; the shared ones are here.
		"--executor-arg=--v=1",
		"--failpoints-dir="+c.FailpointsDir,
		"--v=2",
	)
	if err != nil {
		return nil, err
	}
	// Ready: elected, subscribed to Mesos, serving the plugin.
	ready := getOKProbe(http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/readyz", c.BrokerHTTPPort))
	if err := waitHealthy(ctx, p, 2*time.Minute, ready); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// schedulerUserRBAC grants the local scheduler's user (the PKI's
// system:kube-scheduler) what manifests/rbac.yaml grants the in-cluster
// ServiceAccount.
const schedulerUserRBAC = `apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: k8sm-scheduler-user
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: k8sm-scheduler
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: system:kube-scheduler
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: k8sm-scheduler-user
  namespace: kube-system
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: k8sm-scheduler
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: system:kube-scheduler
`

func startScheduler(ctx context.Context, c Config) (*Process, error) {
	bin, err := c.bin("kube-scheduler")
	if err != nil {
		return nil, err
	}
	if err := checkPortFree("the k8sm kube-scheduler", c.SchedulerPort, "K8SM_SCHEDULER_PORT"); err != nil {
		return nil, err
	}
	if err := c.applyManifest(ctx, "rbac.yaml"); err != nil {
		return nil, err
	}
	if err := c.applyYAML(ctx, "the scheduler user's RBAC", []byte(schedulerUserRBAC)); err != nil {
		return nil, err
	}
	kc := c.PKI().Kubeconfig("scheduler")
	cfgPath, err := c.writeSchedulerConfig(kc)
	if err != nil {
		return nil, err
	}
	argv := []string{bin,
		"--config=" + cfgPath,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.SchedulerPort),
		"--cert-dir=" + filepath.Join(c.StateDir, "kube-scheduler"),
		"--failpoints-dir=" + c.FailpointsDir,
		"--v=2",
	}
	// The feature gates the shipped Deployment gives the scheduler.
	gates, err := manifests.ShippedSchedulerFeatureGates()
	if err != nil {
		return nil, err
	}
	if gates != "" {
		argv = append(argv, "--feature-gates="+gates)
	}
	p, err := startProcess("kube-scheduler", c.StateDir, nil, argv...)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, p, 2*time.Minute, selfSignedHealthz(c.SchedulerPort)); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// writeSchedulerConfig is manifests/scheduler.yaml's KubeSchedulerConfiguration
// pointed at the local broker and API server; leader election stays on.
func (c Config) writeSchedulerConfig(kubeconfig string) (string, error) {
	cfg, err := manifests.ShippedSchedulerConfig()
	if err != nil {
		return "", err
	}
	if err := cfg.SetBrokerAddresses(c.BrokerAddr()); err != nil {
		return "", err
	}
	cert, key := c.PKI().SchedulerBrokerClient()
	if err := cfg.SetBrokerTLS(c.PKI().CACert(), cert, key); err != nil {
		return "", err
	}
	policy, err := c.writeRolePolicy()
	if err != nil {
		return "", err
	}
	if err := cfg.SetRolePolicyFile(policy); err != nil {
		return "", err
	}
	cfg.SetClientConnection(kubeconfig, 0, 0)
	out, err := cfg.YAML()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(c.StateDir, "kube-scheduler")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return "", fmt.Errorf("writing %s: %w", path, err)
	}
	return path, nil
}

// writeRolePolicy writes the shipped role policy (manifests/role-policy.yaml)
// where the broker and the scheduler read it, once: an edit made to the
// local cluster's copy survives restarts, and both re-read it when it
// changes.
func (c Config) writeRolePolicy() (string, error) {
	path := filepath.Join(c.StateDir, "role-policy.yaml")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	b, err := manifests.ShippedRolePolicy()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(c.StateDir, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return "", fmt.Errorf("writing the role policy %s: %w", path, err)
	}
	return path, nil
}

// applyManifest applies one of the shipped manifests (manifests/name).
func (c Config) applyManifest(ctx context.Context, name string) error {
	b, err := manifests.FS.ReadFile(name)
	if err != nil {
		return fmt.Errorf("reading manifests/%s: %w", name, err)
	}
	return c.applyYAML(ctx, "manifests/"+name, b)
}

// applyYAML runs `kubectl apply` as the admin: idempotent, and exactly
// what a person would type.
func (c Config) applyYAML(ctx context.Context, what string, doc []byte) error {
	kubectl, err := c.bin("kubectl")
	if err != nil {
		return err
	}
	var last error
	// The API server may have just started: RBAC bootstrap can lag /readyz.
	for try := 0; try < 10; try++ {
		out, err := runWithStdin(ctx, doc, kubectl, "--kubeconfig", c.AdminKubeconfig(), "apply", "-f", "-")
		if err == nil {
			return nil
		}
		last = fmt.Errorf("kubectl apply of %s: %v: %s", what, err, out)
		select {
		case <-ctx.Done():
			return last
		case <-time.After(time.Second):
		}
	}
	return last
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: GET %s: %s", errNotReady, url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
