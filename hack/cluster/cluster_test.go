package cluster

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpWithoutBinariesSaysToBuild(t *testing.T) {
	cfg, err := TestConfig(filepath.Join(t.TempDir(), "state"), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Up(context.Background(), cfg)
	if err == nil {
		t.Fatal("Up succeeded with an empty bin dir")
	}
	if !strings.Contains(err.Error(), "etcd is not built") || !strings.Contains(err.Error(), "make build") {
		t.Fatalf("error %q does not say what is missing and what to do", err)
	}
	if err := Down(context.Background(), cfg.StateDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cfg.StateDir); !os.IsNotExist(err) {
		t.Fatalf("Down left %s", cfg.StateDir)
	}
}

func TestPKIIsKeptAcrossUps(t *testing.T) {
	p := PKI{Dir: t.TempDir()}
	if err := p.ensure("https://127.0.0.1:6443"); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(p.Kubeconfig("admin"))
	if err != nil {
		t.Fatal(err)
	}
	ca1, _ := os.ReadFile(p.CACert())
	if err := p.ensure("https://127.0.0.1:6443"); err != nil {
		t.Fatal(err)
	}
	ca2, _ := os.ReadFile(p.CACert())
	after, _ := os.ReadFile(p.Kubeconfig("admin"))
	if string(ca1) != string(ca2) || string(before) != string(after) {
		t.Fatal("a second ensure replaced the CA or the admin kubeconfig: handed-out kubeconfigs would stop working")
	}
	cert, _, err := loadPair(p.Cert("apiserver"), p.Key("apiserver"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("serving certificate does not cover 127.0.0.1: %v", err)
	}
	if err := cert.VerifyHostname("kubernetes.default.svc"); err != nil {
		t.Errorf("serving certificate does not cover the in-cluster name: %v", err)
	}
}

func TestNodeCredentialsNameTheNode(t *testing.T) {
	p := PKI{Dir: t.TempDir()}
	if err := p.ensure("https://127.0.0.1:6443"); err != nil {
		t.Fatal(err)
	}
	kc, err := p.NodeCredentials("agent-1", "https://127.0.0.1:6443", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kc); err != nil {
		t.Fatal(err)
	}
	cert, _, err := loadPair(p.Cert("node-agent-1"), p.Key("node-agent-1"))
	if err != nil {
		t.Fatal(err)
	}
	// The Node authorizer recognises kubelets by exactly this identity.
	if cert.Subject.CommonName != "system:node:agent-1" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "system:nodes" {
		t.Fatalf("node identity is %v", cert.Subject)
	}
	serving, _ := p.NodeServingCert("agent-1")
	if _, err := os.Stat(serving); err != nil {
		t.Fatal(err)
	}
}
