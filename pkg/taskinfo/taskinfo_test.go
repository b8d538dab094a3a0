package taskinfo

import (
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod() *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "u1"},
		Spec:       v1.PodSpec{NodeName: "agent-1", Containers: []v1.Container{{Name: "c", Image: "i"}}},
	}
}

func encoded(t *testing.T, p *v1.Pod) PodData {
	t.Helper()
	d, err := EncodePod(p)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRoundTrip(t *testing.T) {
	ti, err := NewTask(encoded(t, pod()), mesos.AgentID{Value: "a"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ti.TaskID.Value != "pod.u1" || ti.Name != "ns/web" {
		t.Errorf("task id %q name %q", ti.TaskID.Value, ti.Name)
	}
	got, err := Decode(&ti)
	if err != nil || got.UID != "u1" || got.Spec.NodeName != "agent-1" {
		t.Fatalf("Decode = %v, %v", got, err)
	}
	if ref, err := Ref(&ti); err != nil || ref != (PodRef{Namespace: "ns", Name: "web", UID: "u1"}) {
		t.Errorf("Ref = %v, %v", ref, err)
	}
}

func TestAttemptInTaskID(t *testing.T) {
	d := encoded(t, pod())
	d.Attempt = "ab12-3"
	ti, err := NewTask(d, mesos.AgentID{Value: "a"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ti.TaskID.Value != "pod.u1.ab12-3" {
		t.Errorf("task id %q, want pod.u1.ab12-3", ti.TaskID.Value)
	}
	if _, err := Decode(&ti); err != nil {
		t.Errorf("Decode of an attempt's task: %v", err)
	}
}

func TestDecodeSaysWhatIsWrong(t *testing.T) {
	good, _ := NewTask(encoded(t, pod()), mesos.AgentID{}, nil, nil)
	other := "other"
	for name, c := range map[string]struct {
		mutate func(*mesos.TaskInfo)
		want   string
	}{
		"empty":       {func(t *mesos.TaskInfo) { t.Data = nil }, "data is empty"},
		"not json":    {func(t *mesos.TaskInfo) { t.Data = []byte("x") }, "not the JSON of a v1.Pod"},
		"not a pod":   {func(t *mesos.TaskInfo) { t.Data = []byte(`{"kind":"Service","metadata":{"name":"s","uid":"u1"}}`) }, "not a Pod"},
		"no uid":      {func(t *mesos.TaskInfo) { t.Data = []byte(`{"metadata":{"name":"s"}}`) }, "no pod name, UID or containers"},
		"wrong id":    {func(t *mesos.TaskInfo) { t.TaskID.Value = "pod.u2" }, "task id would start with pod.u1"},
		"wrong label": {func(t *mesos.TaskInfo) { t.Labels.Labels[1].Value = &other }, "labelled for pod"},
	} {
		ti := good
		ti.Labels = &mesos.Labels{Labels: append([]mesos.Label(nil), good.Labels.Labels...)}
		c.mutate(&ti)
		if _, err := Decode(&ti); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Decode error %v, want one saying %q", name, err, c.want)
		}
	}
}

func TestExecutorInfo(t *testing.T) {
	e := NewExecutorInfo(mesos.FrameworkID{Value: "fw"}, ExecutorConfig{Command: "/bin/k8sm-executor", Kubeconfig: "/k", ContainerRuntimeEndpoint: "unix:///c.sock", RootDir: "/r", ExtraArgs: []string{"--v=2"}})
	if !strings.HasPrefix(e.ExecutorID.Value, ExecutorID()+"-") || !IsExecutorID(e.ExecutorID.Value) || e.Command.GetShell() {
		t.Errorf("executor %v", e)
	}
	want := "/bin/k8sm-executor --kubeconfig=/k --container-runtime-endpoint=unix:///c.sock --root-dir=/r --v=2"
	if got := strings.Join(e.Command.Arguments, " "); got != want {
		t.Errorf("arguments %q, want %q", got, want)
	}
	if e.ShutdownGracePeriod != nil {
		t.Errorf("shutdown grace period %v without one configured, want the agent's", e.ShutdownGracePeriod)
	}
	g := NewExecutorInfo(mesos.FrameworkID{Value: "fw"}, ExecutorConfig{Command: "/bin/k8sm-executor", ShutdownGracePeriod: 45 * time.Second})
	if got := g.GetShutdownGracePeriod().GetNanoseconds(); got != int64(45*time.Second) {
		t.Errorf("shutdown grace period %dns, want 45s", got)
	}
}

// A restarted or failed-over broker must send the very ExecutorInfo the
// running executor was started with, and a changed configuration must name a
// new executor rather than one Mesos refuses as incompatible.
func TestExecutorInfoDeterministic(t *testing.T) {
	cpus := 0.25
	cfg := func() ExecutorConfig {
		return ExecutorConfig{Command: "/bin/k8sm-executor", Kubeconfig: "/k", ExtraArgs: []string{"--v=2"},
			URIs:      []mesos.CommandInfo_URI{{Value: "http://x/k8sm-executor"}},
			Resources: []mesos.Resource{{Name: "cpus", Type: mesos.SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: cpus}}}}
	}
	a := NewExecutorInfo(mesos.FrameworkID{Value: "fw"}, cfg())
	b := NewExecutorInfo(mesos.FrameworkID{Value: "fw"}, cfg())
	if !a.Equal(b) {
		t.Fatalf("two ExecutorInfos of one configuration differ:\n%v\n%v", a, b)
	}
	if other := NewExecutorInfo(mesos.FrameworkID{Value: "fw2"}, cfg()); other.ExecutorID != a.ExecutorID {
		t.Errorf("the framework id changed the executor id: %s vs %s", other.ExecutorID.Value, a.ExecutorID.Value)
	}
	for name, change := range map[string]func(*ExecutorConfig){
		"args":      func(c *ExecutorConfig) { c.ExtraArgs = []string{"--v=4"} },
		"command":   func(c *ExecutorConfig) { c.Command = "/usr/bin/k8sm-executor" },
		"uris":      func(c *ExecutorConfig) { c.URIs = nil },
		"resources": func(c *ExecutorConfig) { c.Resources[0].Scalar.Value = 0.5 },
	} {
		c := cfg()
		change(&c)
		if got := NewExecutorInfo(mesos.FrameworkID{Value: "fw"}, c).ExecutorID; got == a.ExecutorID {
			t.Errorf("changed %s: executor id %s unchanged", name, got.Value)
		}
	}
}
