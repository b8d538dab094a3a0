package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/spf13/pflag"

	brokerzk "github.com/k8sm/k8sm/broker/zk"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// TestValidateNamesFlags: every configuration mistake is reported, naming
// the flag to fix.
func TestValidateNamesFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"--master is required"}},
		{[]string{"--master=mesos:5050"}, []string{"--master=\"mesos:5050\""}},
		{[]string{"--master=http://m:5050"}, []string{"--leader-elect needs ZooKeeper"}},
		{[]string{"--master=zk://zk:2181", "--mesos-codec=xml", "--failover-timeout=0", "--roles="}, []string{"--master: ", "--mesos-codec", "--failover-timeout", "--roles"}},
		{[]string{"--master=http://m:5050", "--leader-elect=false", "--secret-file=/s"}, []string{"--secret-file needs --principal"}},
		{[]string{"--master=zk://zk:2181", "--executor-sha256=abc"}, []string{"--executor-sha256=\"abc\" must be 64 hex digits", "--executor-sha256 needs the --executor-uri"}},
		{[]string{"--master=http://m:5050", "--leader-elect=false", "--master-ca-file=/ca.crt"}, []string{"--master-ca-file is for masters serving https: use --master=https://m:5050"}},
		{[]string{"--master=zk://zk:2181", "--default-pod-cpus=0"}, []string{"--default-pod-cpus=0 and --default-pod-mem=64 must be positive"}},
		// The Broker API launches and kills pods: off loopback it needs mutual TLS.
		{[]string{"--master=zk://zk:2181"}, []string{"--grpc-bind-address=0.0.0.0:10350 is not a loopback address", "--grpc-tls-cert-file"}},
		{[]string{"--master=zk://zk:2181", "--grpc-tls-cert-file=/c"}, []string{"--grpc-tls-cert-file, --grpc-tls-private-key-file and --grpc-client-ca-file go together"}},
		{[]string{"--master=zk://zk:2181", "--grpc-bind-address=127.0.0.1:1", "--grpc-max-watches-per-client=0"}, []string{"--grpc-max-watches-per-client=0"}},
		{[]string{"--master=zk://zk:2181/mesos", "--pod-sync-workers=0", "--node-sync-workers=0"}, []string{"--pod-sync-workers=0", "--node-sync-workers=0"}},
		// Default-deny: without a policy no namespace may use a role but "*".
		{[]string{"--master=zk://zk:2181/mesos", "--roles=k8s,batch"}, []string{`--roles=k8s,batch: the built-in role policy (role "*" for every namespace, no other role) lets no namespace use any of them; give --role-policy-file`}},
	} {
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := o.Validate()
		if err == nil {
			t.Errorf("%v: accepted", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", tc.args, err, w)
			}
		}
	}
	o := NewOptions()
	o.Master = "zk://zk1:2181,zk2:2181/mesos"
	o.GRPC.CertFile, o.GRPC.KeyFile, o.GRPC.ClientCAFile = "/tls.crt", "/tls.key", "/ca.crt"
	if err := o.Validate(); err != nil {
		t.Errorf("defaults with a zk:// master and mutual TLS: %v", err)
	}
	o.GRPC = newGRPCSecurityOptions()
	for _, addr := range []string{"127.0.0.1:10350", "[::1]:10350", "localhost:10350"} {
		o.GRPCAddress = addr
		if err := o.Validate(); err != nil {
			t.Errorf("plaintext on loopback %s: %v", addr, err)
		}
	}
}

// TestKubeAPIRateFlags: --kube-api-qps/--kube-api-burst default to
// kube-scheduler's 50/100, parse, reject values that do not rate-limit as
// asked (naming the flag), and reach the broker's Kubernetes client.
func TestKubeAPIRateFlags(t *testing.T) {
	parse := func(args ...string) *Options {
		t.Helper()
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(append([]string{"--master=zk://zk:2181/mesos"}, args...)); err != nil {
			t.Fatal(err)
		}
		return o
	}
	if o := parse(); o.KubeAPIQPS != 50 || o.KubeAPIBurst != 100 {
		t.Errorf("defaults %v/%d, want 50/100", o.KubeAPIQPS, o.KubeAPIBurst)
	}
	for _, bad := range [][]string{{"--kube-api-qps=0"}, {"--kube-api-qps=-1"}, {"--kube-api-burst=0"}} {
		err := parse(bad...).Validate()
		flag := strings.SplitN(bad[0], "=", 2)[0]
		if err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("%v: error %v does not name %s", bad, err, flag)
		}
	}

	kubeconfig := testKubeconfig(t)
	o := parse("--kube-api-qps=200", "--kube-api-burst=300", "--kubeconfig="+kubeconfig,
		"--grpc-bind-address=127.0.0.1:0", "--http-bind-address=")
	c, err := o.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.GRPCListener.Close()
	rl := c.Kube.CoreV1().RESTClient().GetRateLimiter()
	if rl == nil || rl.QPS() != 200 {
		t.Errorf("the client's rate limiter %v, want 200 QPS", rl)
	}

	// --partition-aware reaches the FrameworkInfo the broker subscribes with.
	for _, on := range []bool{false, true} {
		o := parse(fmt.Sprintf("--partition-aware=%v", on), "--kubeconfig="+kubeconfig, "--grpc-bind-address=127.0.0.1:0", "--http-bind-address=")
		c, err := o.Config(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.GRPCListener.Close()
		got := false
		for _, cp := range c.Framework.Capabilities {
			got = got || cp.Type == mesos.FrameworkInfo_Capability_PARTITION_AWARE
		}
		if got != on {
			t.Errorf("--partition-aware=%v: PARTITION_AWARE capability %v", on, got)
		}
	}
}

// TestExecutorBinary: --executor-binary names the served binary in the
// ExecutorInfo by its content — the same binary gives the same executor id in
// every broker process, a new build a new one — and bad combinations are
// refused naming the flag.
func TestExecutorBinary(t *testing.T) {
	dir := t.TempDir()
	kubeconfig := testKubeconfig(t)
	bin := filepath.Join(dir, "k8sm-executor")
	parse := func(args ...string) *Options {
		t.Helper()
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(append([]string{"--master=zk://zk:2181/mesos", "--kubeconfig=" + kubeconfig,
			"--grpc-bind-address=127.0.0.1:0", "--http-bind-address=", "--executor-bind-address=127.0.0.1:0"}, args...)); err != nil {
			t.Fatal(err)
		}
		return o
	}
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"--executor-binary=" + bin}, "--executor-url-base"},
		{[]string{"--executor-binary=" + bin, "--executor-url-base=ftp://x"}, "--executor-url-base"},
		{[]string{"--executor-binary=" + bin, "--executor-url-base=http://b:10352", "--executor-command=/usr/bin/k8sm-executor"}, "./k8sm-executor"},
	} {
		if err := parse(bad.args...).Validate(); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: error %v does not say %q", bad.args, err, bad.want)
		}
	}
	executorOf := func(content string) (string, string) {
		t.Helper()
		if err := os.WriteFile(bin, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		c, err := parse("--executor-binary="+bin, "--executor-url-base=http://broker.example:10352/").Config(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		c.GRPCListener.Close()
		c.ExecutorListener.Close()
		ei := c.Builder.NewExecutorInfo(mesos.FrameworkID{Value: "fw"}, "*")
		uris := ei.GetCommand().GetURIs()
		if len(uris) != 1 || !strings.HasPrefix(uris[0].Value, "http://broker.example:10352/executor/sha256/"+c.ExecutorBinary.SHA256()+"/k8sm-executor") ||
			!uris[0].GetExecutable() || !uris[0].GetCache() || uris[0].Extract == nil || *uris[0].Extract {
			t.Fatalf("URIs %+v: want the served binary, executable, cached, not extracted", uris)
		}
		if want := taskinfo.VerifiedCommand(c.ExecutorBinary.SHA256(), []string{"./k8sm-executor"}); ei.GetCommand().GetValue() != want || !ei.GetCommand().GetShell() {
			t.Fatalf("command %q (shell %v), want the fetched ./k8sm-executor checked against its sha256: %q", ei.GetCommand().GetValue(), ei.GetCommand().GetShell(), want)
		}
		return ei.ExecutorID.Value, uris[0].Value
	}
	id1, _ := executorOf("build 1")
	id1again, _ := executorOf("build 1")
	id2, _ := executorOf("build 2")
	if id1 != id1again {
		t.Errorf("one binary gave executor ids %s and %s", id1, id1again)
	}
	if id1 == id2 {
		t.Errorf("a new binary kept executor id %s: agents would keep the old executor", id1)
	}
}

// testKubeconfig writes a kubeconfig Config can build clients from (nothing
// is dialed).
func testKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestZKCredentials: credentials in a zk:// URL or a file reach the
// sessions; credentials given but unusable are an error, never dropped.
func TestZKCredentials(t *testing.T) {
	file := filepath.Join(t.TempDir(), "zk")
	if err := os.WriteFile(file, []byte("k8sm:from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args                 []string
		state, master, error string
	}{
		{[]string{"--master=zk://m:pw@zk:2181/mesos"}, "m:pw", "m:pw", ""},
		{[]string{"--master=zk://zk:2181/mesos", "--zk=zk://k8sm:pw@zk:2181/k8sm"}, "k8sm:pw", "k8sm:pw", ""},
		{[]string{"--master=zk://m:pw@zk:2181/mesos", "--zk-credentials-file=" + file}, "k8sm:from-file", "m:pw", ""},
		{[]string{"--master=zk://zk:2181/mesos", "--zk=zk://k8sm@zk:2181/k8sm"}, "", "", "--zk: "},
		{[]string{"--master=zk://zk:2181/mesos", "--zk-credentials-file=/nonexistent"}, "", "", "--zk-credentials-file"},
	} {
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		state, master, err := o.zkAuth(true)
		if tc.error != "" {
			if err == nil || !strings.Contains(err.Error(), tc.error) {
				t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.error)
			}
			continue
		}
		str := func(a *brokerzk.Auth) string {
			if a == nil {
				return ""
			}
			return a.User + ":" + a.Password
		}
		if err != nil || str(state) != tc.state || str(master) != tc.master {
			t.Errorf("%v: state %q master %q (%v), want %q %q", tc.args, str(state), str(master), err, tc.state, tc.master)
		}
	}
}
