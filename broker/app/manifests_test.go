package app

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// manifestDocs returns the YAML documents of manifests/name by kind.
func manifestDocs(t *testing.T, name string) map[string][][]byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "manifests", name))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][][]byte{}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("manifests/%s: %v", name, err)
		}
		if meta.Kind != "" {
			out[meta.Kind] = append(out[meta.Kind], []byte(doc))
		}
	}
	return out
}

func strictInto(t *testing.T, what string, doc []byte, v any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// TestBrokerManifest: manifests/broker.yaml runs two replicas that elect a
// leader in ZooKeeper, with flags the broker accepts, under the
// ServiceAccount broker-rbac.yaml grants, reachable where the scheduler's
// configuration looks for it.
func TestBrokerManifest(t *testing.T) {
	docs := manifestDocs(t, "broker.yaml")
	if len(docs["Deployment"]) != 1 || len(docs["ServiceAccount"]) != 1 || len(docs["Service"]) != 2 {
		t.Fatalf("manifests/broker.yaml has %d Deployments, %d ServiceAccounts, %d Services; want one Deployment and ServiceAccount, two Services",
			len(docs["Deployment"]), len(docs["ServiceAccount"]), len(docs["Service"]))
	}
	var d appsv1.Deployment
	strictInto(t, "broker Deployment", docs["Deployment"][0], &d)
	var sa corev1.ServiceAccount
	strictInto(t, "broker ServiceAccount", docs["ServiceAccount"][0], &sa)
	var svc, execSvc corev1.Service
	for i, doc := range docs["Service"] {
		var s corev1.Service
		strictInto(t, "broker Service", doc, &s)
		if s.Name == "k8sm-broker" {
			svc = s
		} else if s.Name == "k8sm-broker-executor" {
			execSvc = s
		} else {
			t.Errorf("Service %d is %s", i, s.Name)
		}
	}

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2 (a leader and a standby)", d.Spec.Replicas)
	}
	spec := d.Spec.Template.Spec
	if spec.ServiceAccountName != sa.Name || sa.Namespace != d.Namespace {
		t.Errorf("the Deployment runs as %s/%s, the manifest makes ServiceAccount %s/%s", d.Namespace, spec.ServiceAccountName, sa.Namespace, sa.Name)
	}

	// The flags parse, and validate as the broker's command would.
	c := spec.Containers[0]
	o := NewOptions()
	fs := pflag.NewFlagSet("k8sm-broker", pflag.ContinueOnError)
	o.AddFlags(fs)
	args := slices.Clone(c.Command[1:])
	for i := range args {
		args[i] = strings.ReplaceAll(args[i], "$(POD_NAME)", "k8sm-broker-abc")
	}
	if err := fs.Parse(args); err != nil {
		t.Fatalf("the Deployment's flags: %v", err)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("the Deployment's flags do not validate: %v", err)
	}
	if !o.LeaderElect || o.ZK == "" || !strings.HasPrefix(o.Master, "zk://") {
		t.Errorf("leader election %v, --zk %q, --master %q: want replicas electing a leader in ZooKeeper and masters found through it", o.LeaderElect, o.ZK, o.Master)
	}
	if o.FailpointsDir != "" {
		t.Errorf("--failpoints-dir %q: the shipped broker must never arm test failpoints", o.FailpointsDir)
	}
	if o.Identity != "k8sm-broker-abc" {
		t.Errorf("--identity %q: each replica must run for leadership under its own name (the pod's)", o.Identity)
	}

	// The Service, headless, publishes the gRPC port the broker listens on.
	_, grpcPort, _ := net.SplitHostPort(o.GRPCAddress)
	found := false
	for _, p := range svc.Spec.Ports {
		found = found || p.Name == "grpc" && p.TargetPort.String() == "grpc" && p.Port > 0 && itoa(p.Port) == grpcPort
	}
	if !found || svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("Service ports %v clusterIP %q: want a headless Service publishing the gRPC port %s", svc.Spec.Ports, svc.Spec.ClusterIP, grpcPort)
	}
	for _, p := range c.Ports {
		if p.Name == "grpc" && itoa(p.ContainerPort) != grpcPort {
			t.Errorf("container port grpc %d, the broker listens on %s", p.ContainerPort, grpcPort)
		}
	}
	// Agents fetch the executor from the executor Service, at the port the
	// broker serves it on, and the image carries the binary served.
	if o.ExecutorBinary != "/k8sm-executor" || o.ExecutorCommand != "./k8sm-executor" {
		t.Errorf("--executor-binary %q --executor-command %q: want the image's /k8sm-executor, run as the fetched ./k8sm-executor", o.ExecutorBinary, o.ExecutorCommand)
	}
	_, execPort, _ := net.SplitHostPort(o.ExecutorBindAddress)
	served := false
	for _, p := range execSvc.Spec.Ports {
		for _, cp := range c.Ports {
			served = served || p.TargetPort.String() == cp.Name && itoa(cp.ContainerPort) == execPort && p.NodePort > 0 &&
				strings.HasSuffix(o.ExecutorURLBase, ":"+itoa(p.NodePort))
		}
	}
	if !served || execSvc.Spec.Type != corev1.ServiceTypeNodePort {
		t.Errorf("Service k8sm-broker-executor %+v: want a NodePort Service to the executor port %s, named by --executor-url-base %s", execSvc.Spec, execPort, o.ExecutorURLBase)
	}
	// The scheduler's profile dials that Service.
	sched, err := os.ReadFile(filepath.Join("..", "..", "manifests", "scheduler.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "dns:///" + svc.Name + "." + svc.Namespace + ".svc.cluster.local:" + grpcPort
	if !strings.Contains(string(sched), want) {
		t.Errorf("manifests/scheduler.yaml does not dial the broker's Service at %s", want)
	}

	// broker-rbac.yaml grants that ServiceAccount the broker's role.
	rbac := manifestDocs(t, "broker-rbac.yaml")
	bound := false
	for _, doc := range rbac["ClusterRoleBinding"] {
		var b rbacv1.ClusterRoleBinding
		strictInto(t, "broker ClusterRoleBinding", doc, &b)
		for _, s := range b.Subjects {
			bound = bound || s.Kind == "ServiceAccount" && s.Name == sa.Name && s.Namespace == sa.Namespace
		}
	}
	if !bound {
		t.Errorf("manifests/broker-rbac.yaml binds no role to ServiceAccount %s/%s", sa.Namespace, sa.Name)
	}
}

// TestSchedulerManifestServiceAccount: the scheduler's Deployment runs as a
// ServiceAccount the manifests make and rbac.yaml grants.
func TestSchedulerManifestServiceAccount(t *testing.T) {
	docs := manifestDocs(t, "scheduler.yaml")
	var d appsv1.Deployment
	strictInto(t, "scheduler Deployment", docs["Deployment"][0], &d)
	var sa corev1.ServiceAccount
	strictInto(t, "scheduler ServiceAccount", docs["ServiceAccount"][0], &sa)
	if d.Spec.Template.Spec.ServiceAccountName != sa.Name || d.Namespace != sa.Namespace {
		t.Errorf("the scheduler runs as %s/%s, the manifest makes %s/%s", d.Namespace, d.Spec.Template.Spec.ServiceAccountName, sa.Namespace, sa.Name)
	}
	bound := false
	for _, doc := range manifestDocs(t, "rbac.yaml")["ClusterRoleBinding"] {
		var b rbacv1.ClusterRoleBinding
		strictInto(t, "scheduler ClusterRoleBinding", doc, &b)
		for _, s := range b.Subjects {
			bound = bound || s.Kind == "ServiceAccount" && s.Name == sa.Name && s.Namespace == sa.Namespace
		}
	}
	if !bound {
		t.Errorf("manifests/rbac.yaml binds nothing to ServiceAccount %s/%s", sa.Namespace, sa.Name)
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// TestShippedBrokerMemoryLimit: the shipped Deployment gives the broker a
// memory limit (as much as it requests), and the broker running under it
// takes 90% of it as the Go runtime's soft limit without any flag.
func TestShippedBrokerMemoryLimit(t *testing.T) {
	var d appsv1.Deployment
	strictInto(t, "broker Deployment", manifestDocs(t, "broker.yaml")["Deployment"][0], &d)
	var c *corev1.Container
	for i := range d.Spec.Template.Spec.Containers {
		if d.Spec.Template.Spec.Containers[i].Name == "broker" {
			c = &d.Spec.Template.Spec.Containers[i]
		}
	}
	if c == nil {
		t.Fatal("no broker container")
	}
	limit, request := c.Resources.Limits[corev1.ResourceMemory], c.Resources.Requests[corev1.ResourceMemory]
	if limit.IsZero() || limit.Cmp(request) != 0 {
		t.Fatalf("memory limit %s, request %s: want a limit, equal to the request", limit.String(), request.String())
	}
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--memory-limit") {
			t.Errorf("the Deployment sets %s: the soft limit should follow the container's", a)
		}
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "pod"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "pod", "memory.max"), []byte(strconv.FormatInt(limit.Value(), 10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(root, "self-cgroup")
	if err := os.WriteFile(self, []byte("0::/pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOMEMLIMIT", "")
	got, source, err := memoryLimit("", root, self)
	if err != nil || got != int64(float64(limit.Value())*0.9) || source != "cgroup memory limit" {
		t.Errorf("the broker under the shipped limit %s takes %d bytes from %q (%v), want 90%% of it from the cgroup", limit.String(), got, source, err)
	}
}
