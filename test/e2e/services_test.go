//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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

// allowPodList lets the namespace's default service account list its
// pods, nothing more.
func (e *k8smEnv) allowPodList(t *testing.T, ns string) {
	t.Helper()
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

	e.allowPodList(t, ns)
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

// clusterDNS: CoreDNS, deployed as `make up` does (through k8sm, behind
// kube-dns), answers the pods' queries. A client on one agent reaches a
// Service by its name with backends on the other agent, the API by
// kubernetes.default.svc with its token, and a headless Service resolves
// to each of its pods. CoreDNS is removed afterwards so that the later
// scenarios have the agents' room to themselves.
func (e *k8smEnv) clusterDNS(t *testing.T, ns string) {
	ags := e.agents(t)
	if err := e.cl.DeployDNS(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer e.removeDNS(t)
	e.createDeployment(t, ns, "backend", 2, func(d *appsv1.Deployment) { onNode(ags[1].node)(&d.Spec.Template.Spec) })
	e.createPod(t, ns, "client", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "client"}
		onNode(ags[0].node)(&p.Spec)
	})
	e.createService(t, ns, "backend", corev1.ServiceTypeClusterIP, map[string]string{"app": "backend"})
	headless := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "backend-pods"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "backend"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}},
	}
	if _, err := e.cs.CoreV1().Services(ns).Create(e.ctx, headless, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	backends := e.waitRunning(t, ns, "app=backend", 2, 2*time.Minute)
	e.waitRunning(t, ns, "e2e=client", 1, 2*time.Minute)

	// By the short name (the pod's search path) and the full one.
	e.execGet(t, ns, "client", "on node "+ags[1].node+")", "http://backend/")
	e.execGet(t, ns, "client", "on node "+ags[1].node+")", fmt.Sprintf("http://backend.%s.svc.cluster.local/", ns))

	// A headless Service's name is every ready pod's address.
	var ips []string
	for _, p := range backends {
		ips = append(ips, p.Status.PodIP)
	}
	sort.Strings(ips)
	want := strings.Join(ips, "\n")
	e.eventually(t, time.Minute, "backend-pods to resolve to "+strings.Join(ips, ","), func() (bool, string) {
		out, err := e.kubectlErr("exec", "-n", ns, "client", "--", "/webapp", "lookup", "backend-pods")
		return err == nil && strings.TrimSpace(out) == want, out
	})

	// The API by its name, as in-cluster clients find it.
	e.allowPodList(t, ns)
	e.execGet(t, ns, "client", `"name":"client"`, "--service-account",
		fmt.Sprintf("https://kubernetes.default.svc/api/v1/namespaces/%s/pods", ns))
}

// removeDNS deletes the cluster DNS's Deployment and waits for its pods
// to go.
func (e *k8smEnv) removeDNS(t *testing.T) {
	t.Helper()
	if err := e.cs.AppsV1().Deployments("kube-system").Delete(e.ctx, "coredns", metav1.DeleteOptions{}); err != nil {
		t.Errorf("removing the cluster DNS: %v", err)
		return
	}
	e.eventually(t, 2*time.Minute, "the cluster DNS's pods to go", func() (bool, string) {
		ps := e.pods(t, "kube-system", "k8s-app=kube-dns")
		return len(ps) == 0, fmt.Sprintf("%d left", len(ps))
	})
}

// serviceRollout: a Service keeps answering through a rolling update of
// its Deployment. Requests go on the whole time (each on a new connection,
// to a NodePort of the first agent, balanced across both agents' pods);
// not one fails: new pods take traffic once Ready, old ones leave the
// Service's rules before they stop serving (a preStop sleep covers
// kube-proxy's resync, as production Deployments do).
func (e *k8smEnv) serviceRollout(t *testing.T, ns string) {
	ags := e.agents(t)
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	e.createDeployment(t, ns, "web", 2, func(d *appsv1.Deployment) {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &zero}}
		s := &d.Spec.Template.Spec
		grace := int64(5)
		s.TerminationGracePeriodSeconds = &grace
		s.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		}}
		c := &s.Containers[0]
		c.ReadinessProbe = &corev1.Probe{PeriodSeconds: 1, ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}}
		c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 3}}}
	})
	svc := e.createService(t, ns, "web", corev1.ServiceTypeNodePort, map[string]string{"app": "web"})
	old := e.waitRunning(t, ns, "app=web", 2, 2*time.Minute)
	url := fmt.Sprintf("http://%s:%d/", e.nodeIP(t, ags[0].node), svc.Spec.Ports[0].NodePort)
	e.eventually(t, time.Minute, "the Service to answer at "+url, func() (bool, string) {
		b, err := httpGet(url)
		return err == nil, fmt.Sprint(b, err)
	})

	stop := make(chan struct{})
	type result struct {
		ok       int
		failures []string
		answered map[string]bool // pod names
	}
	done := make(chan result)
	go func() {
		r := result{answered: map[string]bool{}}
		client := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			select {
			case <-stop:
				done <- r
				return
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := client.Get(url)
			if err != nil {
				r.failures = append(r.failures, err.Error())
				continue
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				r.failures = append(r.failures, fmt.Sprintf("%s %v", resp.Status, err))
				continue
			}
			r.ok++
			if m := podNameRe.FindStringSubmatch(string(b)); m != nil {
				r.answered[m[1]] = true
			}
		}
	}()
	patch := `{"spec":{"template":{"metadata":{"annotations":{"e2e.k8sm.io/version":"2"}}}}}`
	if _, err := e.cs.AppsV1().Deployments(ns).Patch(e.ctx, "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		close(stop)
		<-done
		t.Fatalf("updating the deployment: %v", err)
	}
	e.eventually(t, 3*time.Minute, "the rollout to finish", func() (bool, string) {
		d, err := e.cs.AppsV1().Deployments(ns).Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := d.Status
		return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == 2 && s.ReadyReplicas == 2 && s.Replicas == 2, fmt.Sprintf("%+v", s)
	})
	// The old pods gone from the API, then a little more traffic.
	e.eventually(t, time.Minute, "the old pods to be gone", func() (bool, string) {
		return len(e.pods(t, ns, "app=web")) == 2, "old pods still there"
	})
	time.Sleep(2 * time.Second)
	close(stop)
	r := <-done
	if len(r.failures) > 0 {
		t.Errorf("%d of %d requests to the Service failed during the rolling update, e.g. %q", len(r.failures), len(r.failures)+r.ok, r.failures[0])
	}
	oldNames := map[string]bool{}
	for _, p := range old {
		oldNames[p.Name] = true
	}
	var newAnswered int
	for name := range r.answered {
		if !oldNames[name] {
			newAnswered++
		}
	}
	if r.ok == 0 || newAnswered == 0 {
		t.Errorf("%d requests answered, by %v: want the new pods among them", r.ok, r.answered)
	}
}

// podNameRe finds the answering pod in webapp's greeting.
var podNameRe = regexp.MustCompile(`\(pod [^/]+/(\S+) on node`)
