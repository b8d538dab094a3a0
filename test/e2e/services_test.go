//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// onNode places a pod on one agent's Node.
func onNode(node string) func(*corev1.PodSpec) {
	return func(s *corev1.PodSpec) { s.NodeSelector = map[string]string{corev1.LabelHostname: node} }
}

func (e *k8smEnv) createService(t *testing.T, ns, name string, typ corev1.ServiceType, selector map[string]string) *corev1.Service {
	t.Helper()
	svc, err := e.cs.CoreV1().Services(ns).Create(e.ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: typ, Selector: selector,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating service %s/%s: %v", ns, name, err)
	}
	return svc
}

// nodeIP is a Node's InternalIP: its agent's address.
func (e *k8smEnv) nodeIP(t *testing.T, node string) string {
	t.Helper()
	n, err := e.cs.CoreV1().Nodes().Get(e.ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range n.Status.Addresses {
		if addr.Type == corev1.NodeInternalIP {
			return addr.Address
		}
	}
	t.Fatalf("node %s has no InternalIP: %+v", node, n.Status.Addresses)
	return ""
}

// execGet runs `webapp get args...` in pod and waits until its output
// holds want.
func (e *k8smEnv) execGet(t *testing.T, ns, pod, want string, args ...string) {
	t.Helper()
	e.eventually(t, time.Minute, fmt.Sprintf("pod %s to get %q from %v", pod, want, args), func() (bool, string) {
		out, err := e.kubectlErr(append([]string{"exec", "-n", ns, pod, "--", "/webapp", "get"}, args...)...)
		return err == nil && strings.Contains(out, want), out
	})
}

// services: kube-proxy runs in every executor. A ClusterIP Service answers
// a pod on one agent with backends on the other; a NodePort Service answers
// on both agents' addresses; a pod reads the API through the kubernetes
// Service with its service account token.
func (e *k8smEnv) services(t *testing.T, ns string) {
	ags := e.agents(t)
	e.createDeployment(t, ns, "backend", 2, func(d *appsv1.Deployment) { onNode(ags[1].node)(&d.Spec.Template.Spec) })
	e.createPod(t, ns, "client", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "client"}
		onNode(ags[0].node)(&p.Spec)
	})
	svc := e.createService(t, ns, "backend", corev1.ServiceTypeClusterIP, map[string]string{"app": "backend"})
	np := e.createService(t, ns, "backend-np", corev1.ServiceTypeNodePort, map[string]string{"app": "backend"})
	e.waitRunning(t, ns, "app=backend", 2, 2*time.Minute)
	e.waitRunning(t, ns, "e2e=client", 1, 2*time.Minute)

	// By its ClusterIP, from the other agent: kube-proxy's rules there
	// send it across the pod network.
	e.execGet(t, ns, "client", "on node "+ags[1].node+")", fmt.Sprintf("http://%s/", svc.Spec.ClusterIP))

	// A NodePort answers on every agent's address, from the host: the
	// agent without a backend forwards to the other.
	port := np.Spec.Ports[0].NodePort
	if b, e2 := e.cfg.AgentPortsBegin, e.cfg.AgentPortsEnd; int(port) >= b && int(port) <= e2 {
		t.Errorf("NodePort %d is in the host port range Mesos offers (%d-%d)", port, b, e2)
	}
	for _, a := range ags {
		url := fmt.Sprintf("http://%s:%d/", e.nodeIP(t, a.node), port)
		e.eventually(t, time.Minute, "NodePort "+url+" of "+a.node, func() (bool, string) {
			b, err := httpGet(url)
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(b, "on node "+ags[1].node+")"), b
		})
	}

	// The pod's service account may list pods here, nothing more.
	if _, err := e.cs.RbacV1().Roles(ns).Create(e.ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cs.RbacV1().RoleBindings(ns).Create(e.ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The API through the kubernetes Service (the API server's advertised
	// address on the agents' link), with the pod's token, trusting the
	// cluster CA the pod was given.
	kubernetes, err := e.cs.CoreV1().Services("default").Get(e.ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.execGet(t, ns, "client", `"name":"client"`, "--service-account",
		fmt.Sprintf("https://%s/api/v1/namespaces/%s/pods", kubernetes.Spec.ClusterIP, ns))
}
