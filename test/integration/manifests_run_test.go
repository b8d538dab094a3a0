//go:build integration

package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/k8sm/k8sm/hack/cluster"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/manifests"
)

// runFromManifests runs the scheduler and the broker the applied
// kustomization describes, as a kubelet would run their pods — there is no
// kubelet for control-plane pods here, so each runs as a process: the
// Deployment's command and args ($(VAR) expanded from its env), its
// ConfigMap and Secret volumes written out at their mount paths under a
// directory of the test, and the token of the Deployment's ServiceAccount
// as its credentials (so the shipped RBAC must suffice). What docs/deploy.md
// tells a user to set is set: the Mesos and ZooKeeper addresses, the
// executor URL, the Secrets of docs/security.md, the broker's address in the
// scheduler configuration; listeners move to free loopback ports. A pod of
// the mesos-scheduler is then placed through Mesos offers and its task runs.
func runFromManifests(ctx context.Context, t *testing.T, cs kubernetes.Interface, cfg cluster.Config) {
	zk := "zk://" + cfg.ZooKeeperAddr()
	res, err := mesossim.ParseResources("cpus:4;mem:4096;disk:10000;ports:[31000-31100]")
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(context.Background())
	sim, err := mesossim.Start(sctx, mesossim.Config{
		ZK: zk + "/mesos", WorkDir: t.TempDir(),
		Master: master.Config{HeartbeatInterval: time.Second, AllocationInterval: 100 * time.Millisecond},
		Agents: []agent.Config{{Hostname: "manifest-agent", Resources: res, Hollow: true, StatusUpdateRetryInterval: 300 * time.Millisecond}},
	})
	if err != nil {
		scancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close(); scancel() })

	// The Secrets docs/security.md has the user make.
	brokerCert, brokerKey := cfg.PKI().BrokerServing()
	clientCert, clientKey := cfg.PKI().SchedulerBrokerClient()
	kubectl(t, cfg, "-n", "kube-system", "create", "secret", "generic", "k8sm-broker-grpc-tls",
		"--from-file=tls.crt="+brokerCert, "--from-file=tls.key="+brokerKey, "--from-file=ca.crt="+cfg.PKI().CACert())
	kubectl(t, cfg, "-n", "kube-system", "create", "secret", "generic", "k8sm-scheduler-broker-client",
		"--from-file=tls.crt="+clientCert, "--from-file=tls.key="+clientKey, "--from-file=ca.crt="+cfg.PKI().CACert())

	ports := make([]int, 5)
	for i := range ports {
		if ports[i], err = cluster.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	brokerHTTP := fmt.Sprintf("127.0.0.1:%d", ports[1])
	executorAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])

	broker := podProcess(ctx, t, cs, cfg, "k8sm-broker", map[string]string{
		"--master":                zk + "/mesos",
		"--zk":                    zk + "/k8sm",
		"--grpc-bind-address":     grpcAddr,
		"--http-bind-address":     brokerHTTP,
		"--executor-bind-address": executorAddr,
		"--executor-url-base":     "http://" + executorAddr,
		// The image's /k8sm-executor.
		"--executor-binary": filepath.Join(cfg.BinDir, "k8sm-executor"),
	}, nil)
	broker.start(t)
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if broker.exited() {
			return false, fmt.Errorf("k8sm-broker exited")
		}
		code, _ := httpGet(ctx, "http://"+brokerHTTP+"/readyz")
		return code == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("the broker of the applied manifests is not ready (elected, subscribed, informers synced): %v", err)
	}

	sched := podProcess(ctx, t, cs, cfg, "k8sm-scheduler", map[string]string{
		"--secure-port":  fmt.Sprint(ports[3]),
		"--bind-address": "127.0.0.1",
	}, func(file, content string) string {
		if !strings.HasSuffix(file, "scheduler-config.yaml") {
			return content
		}
		// In a pod the scheduler reaches the broker's headless Service and
		// the API server in-cluster: here the broker's loopback port and
		// the ServiceAccount's kubeconfig.
		var c manifests.SchedulerConfig
		if err := yaml.Unmarshal([]byte(content), &c); err != nil {
			t.Fatalf("the applied scheduler configuration: %v", err)
		}
		c.SetClientConnection(saKubeconfigPath(t, cfg, "k8sm-scheduler"), 0, 0)
		if err := c.SetBrokerAddresses(grpcAddr); err != nil {
			t.Fatal(err)
		}
		out, err := c.YAML()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	})
	sched.extra = []string{"--authentication-kubeconfig=" + saKubeconfigPath(t, cfg, "k8sm-scheduler"),
		"--authorization-kubeconfig=" + saKubeconfigPath(t, cfg, "k8sm-scheduler")}
	sched.start(t)

	waitNode(ctx, t, cs, "manifest-agent")
	waitNodesSchedulable(ctx, t, cs, 1)
	p := mesosPod("from-manifests", "250m")
	p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 31080}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Bound by the scheduler of the manifests (or it died trying).
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if sched.exited() || broker.exited() {
			return false, fmt.Errorf("the scheduler or the broker exited")
		}
		got, err := cs.CoreV1().Pods("default").Get(ctx, p.Name, metav1.GetOptions{})
		return err == nil && got.Spec.NodeName != "", nil
	})
	if err != nil {
		t.Fatalf("pod %s not bound: %v", p.Name, err)
	}
	waitBound(ctx, t, cs, p.Name, "manifest-agent")
	waitTaskRunning(ctx, t, sim, p.Name, "manifest-agent", 31080)
	if sched.exited() || broker.exited() {
		t.Fatal("the scheduler or the broker exited")
	}
}

// podProc is one container of a Deployment run as a process.
type podProc struct {
	name  string
	argv  []string
	extra []string
	log   string
	cmd   *exec.Cmd
	done  chan struct{}
}

func (p *podProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// podProcess reads Deployment kube-system/name as applied and returns its
// first container as a process: volumes written under a directory of the
// test (mutate may change a file's content), mount paths in the arguments
// pointing there, $(VAR)s expanded, the flags in set replaced (or added),
// and --kubeconfig its ServiceAccount's token when the container has no
// other configuration for it.
func podProcess(ctx context.Context, t *testing.T, cs kubernetes.Interface, cfg cluster.Config, name string, set map[string]string, mutate func(file, content string) string) *podProc {
	t.Helper()
	d, err := cs.AppsV1().Deployments("kube-system").Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	root := t.TempDir()
	// Every mount path, as the files and arguments spell it, to where it is
	// written here.
	var pairs []string
	for _, m := range c.VolumeMounts {
		pairs = append(pairs, m.MountPath+"/", filepath.Join(root, m.MountPath)+"/")
	}
	local := strings.NewReplacer(pairs...)
	for _, m := range c.VolumeMounts {
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name {
				continue
			}
			files := map[string]string{}
			switch {
			case v.Secret != nil:
				s, err := cs.CoreV1().Secrets("kube-system").Get(ctx, v.Secret.SecretName, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("Deployment %s mounts Secret %s: %v", name, v.Secret.SecretName, err)
				}
				for k, b := range s.Data {
					files[k] = string(b)
				}
			case v.ConfigMap != nil:
				cm, err := cs.CoreV1().ConfigMaps("kube-system").Get(ctx, v.ConfigMap.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("Deployment %s mounts ConfigMap %s: %v", name, v.ConfigMap.Name, err)
				}
				for k, s := range cm.Data {
					files[k] = s
				}
			default:
				t.Fatalf("Deployment %s: volume %s is neither a Secret nor a ConfigMap", name, v.Name)
			}
			for k, content := range files {
				if mutate != nil {
					content = mutate(k, content)
				}
				if err := os.WriteFile(filepath.Join(dir, k), []byte(local.Replace(content)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name":
			env[e.Name] = name + "-0"
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		default:
			t.Fatalf("Deployment %s: env %s from %v is not handled here", name, e.Name, e.ValueFrom)
		}
	}
	varRef := regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
	var argv []string
	seen := map[string]bool{}
	for _, a := range append(append([]string(nil), c.Command...), c.Args...) {
		a = varRef.ReplaceAllStringFunc(a, func(ref string) string {
			if v, ok := env[ref[2:len(ref)-1]]; ok {
				return v
			}
			return ref
		})
		a = local.Replace(a)
		flag, _, _ := strings.Cut(a, "=")
		if v, ok := set[flag]; ok {
			a = flag + "=" + v
			seen[flag] = true
		}
		argv = append(argv, a)
	}
	for flag, v := range set {
		if !seen[flag] {
			argv = append(argv, flag+"="+v)
		}
	}
	// The image's binary is the build's.
	argv[0] = filepath.Join(cfg.BinDir, filepath.Base(argv[0]))
	if name == "k8sm-broker" {
		// In a pod: rest.InClusterConfig with the ServiceAccount's token.
		argv = append(argv, "--kubeconfig="+saKubeconfigPath(t, cfg, spec.ServiceAccountName))
	}
	return &podProc{name: name, argv: argv, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
}

func (p *podProc) start(t *testing.T) {
	t.Helper()
	log, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(p.argv[0], append(p.argv[1:], p.extra...)...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Logf("%s runs %q", p.name, append(p.argv, p.extra...))
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		_ = log.Close()
		if t.Failed() {
			if b, err := os.ReadFile(p.log); err == nil {
				t.Logf("%s log (last 8 KiB):\n%s", p.name, tail(b, 8<<10))
			}
		}
	})
}

// saKubeconfigPath writes a kubeconfig holding a token of ServiceAccount
// kube-system/sa (kubectl create token), as a pod of that account has.
func saKubeconfigPath(t *testing.T, cfg cluster.Config, sa string) string {
	t.Helper()
	p := filepath.Join(cfg.StateDir, "sa-"+sa+".kubeconfig")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	token := strings.TrimSpace(kubectl(t, cfg, "-n", "kube-system", "create", "token", sa, "--duration=1h"))
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: %s, user: {token: %q}}]
contexts: [{name: c, context: {cluster: c, user: %s}}]
current-context: c
`, cfg.APIServerURL(), cfg.PKI().CACert(), sa, token, sa)
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
