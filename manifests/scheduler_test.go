package manifests

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/k8sm/k8sm/pkg/rolepolicy"
)

// renderedSchedulerConfig is what a test reads back of a rendered
// KubeSchedulerConfiguration.
type renderedSchedulerConfig struct {
	ClientConnection map[string]any `json:"clientConnection"`
	LeaderElection   map[string]any `json:"leaderElection"`
	Profiles         []struct {
		SchedulerName string `json:"schedulerName"`
		PluginConfig  []struct {
			Name string         `json:"name"`
			Args map[string]any `json:"args"`
		} `json:"pluginConfig"`
	} `json:"profiles"`
}

func TestShippedSchedulerConfigPointsAtTheGivenBroker(t *testing.T) {
	cfg, err := ShippedSchedulerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetBrokerAddresses("127.0.0.1:12345"); err != nil {
		t.Fatal(err)
	}
	cfg.SetClientConnection("/x/scheduler.kubeconfig", 0, 0)
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var got renderedSchedulerConfig
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	if len(got.Profiles) != 1 || got.Profiles[0].SchedulerName != "mesos-scheduler" {
		t.Fatalf("profiles %+v, want the one mesos-scheduler profile:\n%s", got.Profiles, out)
	}
	var args map[string]any
	for _, pc := range got.Profiles[0].PluginConfig {
		if pc.Name == MesosOffersPlugin {
			args = pc.Args
		}
	}
	if args == nil {
		t.Fatalf("the mesos-scheduler profile lost its %s pluginConfig:\n%s", MesosOffersPlugin, out)
	}
	if addrs, _ := args["brokerAddresses"].([]any); len(addrs) != 1 || addrs[0] != "127.0.0.1:12345" {
		t.Errorf("brokerAddresses %v, want [127.0.0.1:12345]", args["brokerAddresses"])
	}
	// The rest of the plugin's args are the shipped ones.
	if args["launchTimeout"] != "30s" {
		t.Errorf("launchTimeout %v, want the shipped 30s", args["launchTimeout"])
	}
	// Only the kubeconfig was given: qps and burst stay the scheduler's defaults.
	if len(got.ClientConnection) != 1 || got.ClientConnection["kubeconfig"] != "/x/scheduler.kubeconfig" {
		t.Errorf("clientConnection %v, want only the kubeconfig", got.ClientConnection)
	}
	if got.LeaderElection["leaderElect"] != true || got.LeaderElection["resourceName"] != "k8sm-scheduler" {
		t.Errorf("leaderElection %v, want the shipped election under the k8sm-scheduler lease", got.LeaderElection)
	}
}

func TestSchedulerConfigClientConnectionAndLeaderElection(t *testing.T) {
	cfg, err := ShippedSchedulerConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetClientConnection("/k", 500, 1000)
	cfg.SetLeaderElect(false)
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	var got renderedSchedulerConfig
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	cc := got.ClientConnection
	if cc["kubeconfig"] != "/k" || cc["qps"] != float64(500) || cc["burst"] != float64(1000) {
		t.Errorf("clientConnection %v, want kubeconfig /k, qps 500, burst 1000", cc)
	}
	if got.LeaderElection["leaderElect"] != false {
		t.Errorf("leaderElection %v, want leaderElect false", got.LeaderElection)
	}
	// A second copy is the shipped file again, not the edited one.
	again, err := ShippedSchedulerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := again["clientConnection"]; ok {
		t.Errorf("a fresh copy has the clientConnection set on an earlier one: %v", again["clientConnection"])
	}
}

func TestSchedulerConfigWithoutMesosOffersIsAnError(t *testing.T) {
	manifest := `apiVersion: v1
kind: ServiceAccount
metadata:
  name: k8sm-scheduler
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: k8sm-scheduler-config
data:
  scheduler-config.yaml: |
    apiVersion: kubescheduler.config.k8s.io/v1
    kind: KubeSchedulerConfiguration
    profiles:
    - schedulerName: mesos-scheduler
      pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
`
	cfg, err := parseSchedulerConfig([]byte(manifest))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.SetBrokerAddresses("127.0.0.1:12345")
	if err == nil {
		t.Fatal("a configuration without MesosOffers was pointed at a broker without error")
	}
	if !strings.Contains(err.Error(), "manifests/scheduler.yaml") || !strings.Contains(err.Error(), MesosOffersPlugin) {
		t.Errorf("error %q does not name manifests/scheduler.yaml and the missing plugin", err)
	}
}

func TestSchedulerManifestWithoutConfigMapIsAnError(t *testing.T) {
	_, err := parseSchedulerConfig([]byte("apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: k8sm-scheduler\n"))
	if err == nil {
		t.Fatal("a manifest without the ConfigMap gave a configuration")
	}
	if !strings.Contains(err.Error(), "manifests/scheduler.yaml") || !strings.Contains(err.Error(), "scheduler-config.yaml") {
		t.Errorf("error %q does not name manifests/scheduler.yaml and the missing ConfigMap key", err)
	}
}

// TestSchedulerManifestDocumentSeparators: the ConfigMap is found however
// the file separates its documents: a leading "---", CRLF line ends, a
// separator followed by spaces or a comment.
func TestSchedulerManifestDocumentSeparators(t *testing.T) {
	const sa = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: k8sm-scheduler\n"
	const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: k8sm-scheduler\ndata:\n  scheduler-config.yaml: |\n    kind: KubeSchedulerConfiguration\n    profiles:\n    - schedulerName: mesos-scheduler\n"
	for name, manifest := range map[string]string{
		"leading separator":  "---\n" + sa + "---\n" + cm,
		"CRLF":               strings.ReplaceAll(sa+"---\n"+cm, "\n", "\r\n"),
		"trailing spaces":    sa + "---   \n" + cm,
		"separator comment":  sa + "--- # the configuration\n" + cm,
		"trailing separator": sa + "---\n" + cm + "---\n",
	} {
		cfg, err := parseSchedulerConfig([]byte(manifest))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if cfg["kind"] != "KubeSchedulerConfiguration" {
			t.Errorf("%s: read %v, want the ConfigMap's KubeSchedulerConfiguration", name, cfg)
		}
	}
}

// TestShippedRolePolicy: the ConfigMap both the broker and the scheduler
// mount holds a policy they accept, and both read it where it is mounted.
func TestShippedRolePolicy(t *testing.T) {
	b, err := ShippedRolePolicy()
	if err != nil {
		t.Fatal(err)
	}
	p, err := rolepolicy.Parse(b, "manifests/role-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := p.Resolve("any-namespace", nil); len(got) != 1 || got[0] != "*" {
		t.Errorf("the shipped policy gives a namespace roles %v, want [*]", got)
	}
	for _, f := range []struct{ name, want string }{
		{"broker.yaml", "--role-policy-file=/etc/k8sm/role-policy/role-policy.yaml"},
		{"broker.yaml", "mountPath: /etc/k8sm/role-policy"},
		{"scheduler.yaml", "rolePolicyFile: /etc/k8sm-role-policy/role-policy.yaml"},
		{"scheduler.yaml", "mountPath: /etc/k8sm-role-policy"},
		{"kustomization.yaml", "- role-policy.yaml"},
	} {
		raw, err := FS.ReadFile(f.name)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), f.want) {
			t.Errorf("manifests/%s lacks %q", f.name, f.want)
		}
	}
	for _, f := range []string{"broker.yaml", "scheduler.yaml"} {
		raw, _ := FS.ReadFile(f)
		if !strings.Contains(string(raw), "name: k8sm-role-policy") {
			t.Errorf("manifests/%s does not mount the ConfigMap k8sm-role-policy", f)
		}
	}
}

func TestSchedulerFeatureGatesOfTheDeployment(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
spec:
  template:
    spec:
      containers:
      - name: sidecar
        command: [/x, --feature-gates=Other=true]
      - name: kube-scheduler
        command:
        - /kube-scheduler
        - --feature-gates=SchedulerAsyncAPICalls=true
        args: [--v=2]
`
	got, err := parseSchedulerFeatureGates([]byte("kind: ServiceAccount\n---\n" + deployment))
	if err != nil || got != "SchedulerAsyncAPICalls=true" {
		t.Errorf("feature gates %q (%v), want SchedulerAsyncAPICalls=true of the kube-scheduler container", got, err)
	}
	got, err = parseSchedulerFeatureGates([]byte(strings.ReplaceAll(deployment, "        - --feature-gates=SchedulerAsyncAPICalls=true\n", "")))
	if err != nil || got != "" {
		t.Errorf("without the flag: %q (%v), want none", got, err)
	}
	if _, err := parseSchedulerFeatureGates([]byte("kind: ServiceAccount\n")); err == nil {
		t.Error("a manifest without the scheduler's Deployment: no error")
	}
	// The shipped file parses (whatever gates it sets).
	if _, err := ShippedSchedulerFeatureGates(); err != nil {
		t.Errorf("manifests/scheduler.yaml: %v", err)
	}
}
