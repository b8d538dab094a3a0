package executor_test

import (
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// launchWithPorts ACCEPTs an offer with the pod's task holding exactly the
// host ports in ports (Mesos --resources text, e.g. "[31007-31007]").
func (e *env) launchWithPorts(p *v1.Pod, ports string) string {
	e.t.Helper()
	ti := e.task(p)
	e.launchTaskWith(ti, "cpus:0.5;mem:64;ports:"+ports)
	return ti.TaskID.Value
}

func (e *env) wildcardPod(name, hostPorts string) *v1.Pod {
	e.t.Helper()
	p := e.pod(name, map[string]string{"k8sm.io/wildcard-ports": "true", "k8sm.io/host-ports": hostPorts})
	p.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: 8080, Protocol: v1.ProtocolTCP}}
	p, err := e.api.CoreV1().Pods("default").Update(e.ctx, p, metav1.UpdateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// A tenant's annotation naming a host port Mesos did not allocate to the
// task (the agent's own 5051) must not reach the kubelet: the task fails,
// saying why.
func TestHostPortNotAllocatedFailsTheTask(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.wildcardPod("sneaky", `[{"container":"web","containerPort":8080,"protocol":"TCP","hostPort":5051}]`)
	id := e.launchWithPorts(p, "[31007-31007]")
	e.startExecutor(e.mesosEnv())
	st := e.update(id, mesos.TASK_FAILED)
	if !strings.Contains(st.GetMessage(), "5051") || !strings.Contains(st.GetMessage(), "did not allocate") {
		t.Errorf("TASK_FAILED message %q does not name the port and say it was not allocated", st.GetMessage())
	}
	if got := e.kube.lastHanded(p.UID); got != nil && got.Spec.Containers[0].Ports[0].HostPort == 5051 {
		t.Errorf("the kubelet was handed the pod with host port 5051")
	}
}

// The annotation is the tenant's to edit at any time: rewriting it on a
// running pod must not move its port to one Mesos never allocated.
func TestHostPortRewrittenAfterLaunchFailsTheTask(t *testing.T) {
	e := newEnv(t, 30*time.Second)
	p := e.wildcardPod("rewritten", `[{"container":"web","containerPort":8080,"protocol":"TCP","hostPort":31007}]`)
	id := e.launchWithPorts(p, "[31007-31007]")
	e.startExecutor(e.mesosEnv())
	e.update(id, mesos.TASK_RUNNING)
	if got := e.kube.lastHanded(p.UID); got == nil || got.Spec.Containers[0].Ports[0].HostPort != 31007 {
		t.Fatalf("the allocated port did not reach the kubelet: %v", got)
	}
	live, err := e.api.CoreV1().Pods("default").Get(e.ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	live.Annotations["k8sm.io/host-ports"] = `[{"container":"web","containerPort":8080,"protocol":"TCP","hostPort":22}]`
	if _, err := e.api.CoreV1().Pods("default").Update(e.ctx, live, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	st := e.update(id, mesos.TASK_FAILED)
	if !strings.Contains(st.GetMessage(), "22") {
		t.Errorf("TASK_FAILED message %q does not name port 22", st.GetMessage())
	}
	for _, h := range e.kube.handedPorts(p.UID) {
		if h == 22 {
			t.Errorf("the kubelet was handed the pod with host port 22")
		}
	}
}
