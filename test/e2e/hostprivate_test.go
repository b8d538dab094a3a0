//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// hostPrivate: a host-private Service (no spec.selector, the annotation
// k8sm.io/host-private-selector naming its pods) gets EndpointSlices from
// the broker at the backend's agent address and the host port Mesos
// allocated to it; a client pod on the other agent reaches it through the
// ClusterIP (kube-proxy sends it to hostIP:hostPort) and at
// hostIP:hostPort directly; when the backend's task runs again on the
// other agent the slice follows, and a client on the backend's own agent
// reaches it both ways too; with no backend left no endpoint stays.
// The broker may write no EndpointSlice but these, and a Service with a
// mistake is refused.
func (e *k8smEnv) hostPrivate(t *testing.T, ns string) {
	ags := e.agents(t)
	e.createDeployment(t, ns, "backend", 1, func(d *appsv1.Deployment) {
		s := &d.Spec.Template.Spec
		onNode(ags[1].node)(s)
		d.Spec.Template.Annotations = map[string]string{"k8sm.io/wildcard-ports": "true"}
		s.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	})
	for i, a := range ags {
		e.createPod(t, ns, fmt.Sprintf("client-%d", i+1), func(p *corev1.Pod) {
			p.Labels = map[string]string{"e2e": "client"}
			onNode(a.node)(&p.Spec)
		})
	}
	// Mistakes are refused when the Service is written
	// (manifests/host-private.yaml), each saying what to change.
	for _, tc := range []struct {
		mutate func(*corev1.Service)
		want   string
	}{
		{func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "backend"} }, "must not have spec.selector"},
		{func(s *corev1.Service) { s.Annotations["k8sm.io/host-private-selector"] = "" }, "is empty, which would select every pod"},
		{func(s *corev1.Service) {
			delete(s.Annotations, "k8sm.io/host-private-selector")
			s.Annotations["k8sm.io/host-private-selecter"] = "app=backend"
		}, "k8sm reads only the annotation k8sm.io/host-private-selector on Services"},
	} {
		bad := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bad", Annotations: map[string]string{"k8sm.io/host-private-selector": "app=backend"}},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
		}
		tc.mutate(bad)
		_, err := e.cs.CoreV1().Services(ns).Create(e.ctx, bad, metav1.CreateOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("creating a host-private Service with a mistake: %v, want an error saying %q", err, tc.want)
			_ = e.cs.CoreV1().Services(ns).Delete(e.ctx, "bad", metav1.DeleteOptions{})
		}
	}
	svc, err := e.cs.CoreV1().Services(ns).Create(e.ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "backend",
			Annotations: map[string]string{"k8sm.io/host-private-selector": "app=backend"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating the host-private Service: %v", err)
	}
	backend := e.waitRunning(t, ns, "app=backend", 1, 2*time.Minute)[0]
	e.waitRunning(t, ns, "e2e=client", 2, 2*time.Minute)
	at := e.waitHostPrivateEndpoints(t, svc, backend)

	// Through the ClusterIP from the other agent, and at the agent's
	// address from a pod and from the host (the agents' link).
	want := "on node " + ags[1].node + ")"
	e.execGet(t, ns, "client-1", want, fmt.Sprintf("http://%s/", svc.Spec.ClusterIP))
	e.execGet(t, ns, "client-1", want, "http://"+at+"/")
	e.eventually(t, 30*time.Second, "http://"+at+"/ from the host", func() (bool, string) {
		b, err := httpGet("http://" + at + "/")
		return err == nil && strings.Contains(b, want), fmt.Sprint(b, err)
	})

	// The backend's task runs again on the other agent: the slice follows.
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"nodeSelector":{%q:%q}}}}}`, corev1.LabelHostname, ags[0].node)
	if _, err := e.cs.AppsV1().Deployments(ns).Patch(e.ctx, "backend", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("moving the backend: %v", err)
	}
	var moved corev1.Pod
	e.eventually(t, 2*time.Minute, "the backend to run on "+ags[0].node+" alone", func() (bool, string) {
		ps := e.pods(t, ns, "app=backend")
		if len(ps) != 1 || ps[0].UID == backend.UID || !ready(&ps[0]) || ps[0].Spec.NodeName != ags[0].node {
			var s []string
			for _, p := range ps {
				s = append(s, fmt.Sprintf("%s %s on %s", p.Name, p.Status.Phase, p.Spec.NodeName))
			}
			return false, strings.Join(s, "; ")
		}
		moved = ps[0]
		return true, ""
	})
	at = e.waitHostPrivateEndpoints(t, svc, moved)
	want = "on node " + ags[0].node + ")"
	e.execGet(t, ns, "client-2", want, fmt.Sprintf("http://%s/", svc.Spec.ClusterIP))
	e.execGet(t, ns, "client-2", want, "http://"+at+"/")
	// A client on the backend's own agent, both ways: kube-proxy's DNAT
	// to the agent's own address is the connection's only one, so the
	// executor's relay on hostIP:hostPort takes it to the pod
	// (executor/hairpin; without it: connection refused).
	e.execGet(t, ns, "client-1", want, "http://"+at+"/")
	e.execGet(t, ns, "client-1", want, fmt.Sprintf("http://%s/", svc.Spec.ClusterIP))

	// The broker may write only host-private slices: as its user, a slice
	// of the stock controller's for this Service, or one of the
	// kubernetes Service's, is refused by the shipped admission policy.
	for _, tc := range []struct{ ns, service, managedBy string }{
		{ns, "backend", "endpointslice-controller.k8s.io"},
		{"default", "kubernetes", "host-private.k8sm.io"},
	} {
		s := discoveryv1.EndpointSlice{
			TypeMeta:    metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta:  metav1.ObjectMeta{Namespace: tc.ns, Name: "e2e-forged", Labels: map[string]string{discoveryv1.LabelServiceName: tc.service, discoveryv1.LabelManagedBy: tc.managedBy}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.87.0.250"}}},
		}
		b, _ := json.Marshal(s)
		f := filepath.Join(t.TempDir(), "slice.json")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := e.kubectlErr("--as", "system:k8sm-broker", "create", "-f", f)
		if err == nil {
			_, _ = e.kubectlErr("delete", "-n", tc.ns, "endpointslice", "e2e-forged")
			t.Errorf("the broker's user created an EndpointSlice of %s/%s managed by %s", tc.ns, tc.service, tc.managedBy)
		} else if !strings.Contains(out, "k8sm-broker may only write EndpointSlices") {
			t.Errorf("the broker's forged EndpointSlice of %s/%s was refused, but not by the policy: %s", tc.ns, tc.service, out)
		}
	}

	// No backend: no endpoint.
	e.scale(t, ns, "backend", 0)
	e.eventually(t, time.Minute, "no endpoint of "+svc.Name, func() (bool, string) {
		got := e.sliceEndpoints(t, svc)
		return len(got) == 0, strings.Join(got, ", ")
	})
}

// waitHostPrivateEndpoints waits until the Service's only endpoint is the
// pod's agent address and allocated host port, ready, in a slice k8sm
// manages and the Service owns; it returns "address:port".
func (e *k8smEnv) waitHostPrivateEndpoints(t *testing.T, svc *corev1.Service, pod corev1.Pod) string {
	t.Helper()
	var as []struct {
		HostPort int32 `json:"hostPort"`
	}
	if err := json.Unmarshal([]byte(pod.Annotations["k8sm.io/host-ports"]), &as); err != nil || len(as) != 1 {
		t.Fatalf("pod %s records its host ports as %q (%v)", pod.Name, pod.Annotations["k8sm.io/host-ports"], err)
	}
	at := fmt.Sprintf("%s:%d", pod.Status.HostIP, as[0].HostPort)
	if pod.Status.HostIP != e.nodeIP(t, pod.Spec.NodeName) {
		t.Errorf("pod %s's hostIP %s is not its node's address %s", pod.Name, pod.Status.HostIP, e.nodeIP(t, pod.Spec.NodeName))
	}
	want := fmt.Sprintf("%s ready pod %s host-private.k8sm.io owner %s", at, pod.Name, svc.UID)
	e.eventually(t, time.Minute, "the endpoints of "+svc.Name+" to be "+want, func() (bool, string) {
		got := e.sliceEndpoints(t, svc)
		return slices.Equal(got, []string{want}), strings.Join(got, ", ")
	})
	return at
}

// sliceEndpoints lists every endpoint of the Service's EndpointSlices as
// "address:port ready|not-ready pod <name> <managed-by> owner <uid>".
func (e *k8smEnv) sliceEndpoints(t *testing.T, svc *corev1.Service) []string {
	t.Helper()
	l, err := e.cs.DiscoveryV1().EndpointSlices(svc.Namespace).List(e.ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc.Name})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range l.Items {
		owner := "none"
		if len(s.OwnerReferences) == 1 {
			owner = string(s.OwnerReferences[0].UID)
		}
		for _, ep := range s.Endpoints {
			for _, p := range s.Ports {
				r := "not-ready"
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					r = "ready"
				}
				name := ""
				if ep.TargetRef != nil {
					name = ep.TargetRef.Name
				}
				out = append(out, fmt.Sprintf("%s:%d %s pod %s %s owner %s", strings.Join(ep.Addresses, ","), *p.Port, r, name, s.Labels[discoveryv1.LabelManagedBy], owner))
			}
		}
	}
	slices.Sort(out)
	return out
}
