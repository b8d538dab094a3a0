package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestApplyFlagEnv(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	node := fs.String("node-name", "", "")
	port := fs.Int32("kubelet-port", 10250, "")
	root := fs.String("root-dir", "/var/lib/k8sm/kubelet", "")
	reserved := fs.StringToString("system-reserved", nil, "")
	if err := fs.Parse([]string{"--root-dir=/flag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"K8SM_NODE_NAME":       "agent-2",
		"K8SM_KUBELET_PORT":    "10251",
		"K8SM_ROOT_DIR":        "/env",
		"K8SM_SYSTEM_RESERVED": "memory=20Gi,cpu=1",
	}
	used, err := ApplyFlagEnv(fs, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if *node != "agent-2" || *port != 10251 || (*reserved)["memory"] != "20Gi" || (*reserved)["cpu"] != "1" {
		t.Errorf("env defaults not applied: node %q port %d reserved %v", *node, *port, *reserved)
	}
	if *root != "/flag" {
		t.Errorf("--root-dir on the command line must win over K8SM_ROOT_DIR, got %q", *root)
	}
	if strings.Contains(strings.Join(used, ","), "K8SM_ROOT_DIR") {
		t.Errorf("K8SM_ROOT_DIR reported as used: %v", used)
	}
}

func TestApplyFlagEnvBadValue(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Int32("kubelet-port", 10250, "")
	_, err := ApplyFlagEnv(fs, func(k string) string {
		if k == "K8SM_KUBELET_PORT" {
			return "ten"
		}
		return ""
	})
	if err == nil || !strings.Contains(err.Error(), "K8SM_KUBELET_PORT") {
		t.Fatalf("bad value not reported with its variable: %v", err)
	}
}
