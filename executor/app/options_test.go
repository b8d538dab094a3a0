package app

import (
	"reflect"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestParse: flags win over K8SM_* variables, variables over defaults, and
// klog's flags take nothing from the environment.
func TestParse(t *testing.T) {
	o, used, err := Parse([]string{"--kubelet-port=10251", "--node-labels=a=1", "--v=2"}, env(map[string]string{
		"K8SM_KUBELET_PORT":         "10999", // the flag wins
		"K8SM_ROOT_DIR":             "/var/lib/agent-1/kubelet",
		"K8SM_BIND_TIMEOUT":         "30s",
		"K8SM_REGISTER_WITH_TAINTS": "k8sm.io/mesos-agent=true:NoSchedule",
		"K8SM_V":                    "9", // klog's, not ours
	}))
	if err != nil {
		t.Fatal(err)
	}
	if o.KubeletPort != 10251 || o.RootDir != "/var/lib/agent-1/kubelet" || o.BindTimeout != 30*time.Second {
		t.Errorf("options %+v", o)
	}
	if o.ImagePullTimeout != 5*time.Minute || o.RuntimeEndpoint != "unix:///run/containerd/containerd.sock" || o.KubeletAddress != "0.0.0.0" {
		t.Errorf("defaults lost: %+v", o)
	}
	if !reflect.DeepEqual(o.NodeLabels, map[string]string{"a": "1"}) {
		t.Errorf("node labels %v", o.NodeLabels)
	}
	want := []string{"K8SM_BIND_TIMEOUT", "K8SM_REGISTER_WITH_TAINTS", "K8SM_ROOT_DIR"}
	if !reflect.DeepEqual(sortedCopy(used), want) {
		t.Errorf("variables used %v, want %v", used, want)
	}
	taints, err := o.taints()
	if err != nil || len(taints) != 1 || taints[0].Key != "k8sm.io/mesos-agent" || taints[0].Effect != v1.TaintEffectNoSchedule {
		t.Errorf("taints %v, %v", taints, err)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestParseSaysWhatIsWrong: a bad value names the flag or the variable.
func TestParseSaysWhatIsWrong(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--kubelet-port=http"}, nil, "kubelet-port"},
		{nil, map[string]string{"K8SM_BIND_TIMEOUT": "soon"}, `K8SM_BIND_TIMEOUT="soon"`},
		{[]string{"extra"}, nil, "takes no arguments"},
	} {
		_, _, err := Parse(c.args, env(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: error %v, want it to name %q", c.args, c.env, err, c.want)
		}
	}
	o := NewOptions()
	o.Taints = []string{"no-effect"}
	if _, err := o.taints(); err == nil || !strings.Contains(err.Error(), `--register-with-taints "no-effect"`) {
		t.Errorf("bad taint: %v", err)
	}
}

// TestConfigNeedsTheAgent: started outside a Mesos agent, the executor says
// so instead of running.
func TestConfigNeedsTheAgent(t *testing.T) {
	_, err := NewOptions().Config(env(nil))
	if err == nil || !strings.Contains(err.Error(), "not started by a Mesos agent") || !strings.Contains(err.Error(), "MESOS_AGENT_ENDPOINT") {
		t.Errorf("error %v, want it to say the agent's variables are missing", err)
	}
}
