package hostprivate

import (
	"fmt"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

func hostPrivateService(mutate ...func(*v1.Service)) *v1.Service {
	svc := &v1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "svc-uid",
			Annotations: map[string]string{taskinfo.HostPrivateSelectorAnnotation: "app=web"}},
		Spec: v1.ServiceSpec{Ports: []v1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	for _, m := range mutate {
		m(svc)
	}
	return svc
}

// webPod is a pod of app=web placed on node at hostIP, Running and Ready,
// its port 8080 a wildcard port k8sm allocated hostPort for.
func webPod(name, node, hostIP string, hostPort int32, mutate ...func(*v1.Pod)) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: k8stypes.UID("uid-" + name), Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{
				taskinfo.WildcardPortsAnnotation: "true",
				taskinfo.HostPortsAnnotation:     fmt.Sprintf(`[{"container":"web","containerPort":8080,"protocol":"TCP","hostPort":%d}]`, hostPort),
			}},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "web",
			Ports: []v1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
		Status: v1.PodStatus{Phase: v1.PodRunning, HostIP: hostIP, PodIP: "10.88.9.9",
			Conditions: []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// endpoints renders slices as "address:port ready/serving/terminating
// node pod" lines, one per endpoint and port, in slice order.
func endpoints(ss []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range ss {
		for _, ep := range s.Endpoints {
			for _, p := range s.Ports {
				c := ep.Conditions
				out = append(out, fmt.Sprintf("%s %s:%d %v/%v/%v %s %s", *p.Name, ep.Addresses[0], *p.Port,
					*c.Ready, *c.Serving, *c.Terminating, *ep.NodeName, ep.TargetRef.Name))
			}
		}
	}
	return out
}

// TestDesiredEndpointsAreAgentAddressAndAllocatedHostPort: each pod's
// endpoint is its agent's address and the host port Mesos allocated to the
// container port the Service targets — by number or by name, wildcard
// (recorded by k8sm) or fixed — never the pod's own address.
func TestDesiredEndpointsAreAgentAddressAndAllocatedHostPort(t *testing.T) {
	fixed := webPod("web-fixed", "agent-2", "10.87.0.12", 0, func(p *v1.Pod) {
		delete(p.Annotations, taskinfo.HostPortsAnnotation)
		p.Spec.Containers[0].Ports[0].HostPort = 31500
	})
	for _, tc := range []struct {
		name string
		svc  *v1.Service
		pods []*v1.Pod
		want []string
	}{
		{"wildcard port by number", hostPrivateService(), []*v1.Pod{webPod("web-1", "agent-1", "10.87.0.11", 31007)},
			[]string{"http 10.87.0.11:31007 true/true/false agent-1 web-1"}},
		{"by name", hostPrivateService(func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("http") }),
			[]*v1.Pod{webPod("web-1", "agent-1", "10.87.0.11", 31007)},
			[]string{"http 10.87.0.11:31007 true/true/false agent-1 web-1"}},
		{"fixed host port", hostPrivateService(), []*v1.Pod{fixed},
			[]string{"http 10.87.0.12:31500 true/true/false agent-2 web-fixed"}},
		{"two pods on one port set share a slice", hostPrivateService(func(s *v1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("http") }),
			[]*v1.Pod{webPod("web-b", "agent-2", "10.87.0.12", 31007), webPod("web-a", "agent-1", "10.87.0.11", 31007)},
			[]string{"http 10.87.0.11:31007 true/true/false agent-1 web-a", "http 10.87.0.12:31007 true/true/false agent-2 web-b"}},
		{"not ready", hostPrivateService(), []*v1.Pod{webPod("web-1", "agent-1", "10.87.0.11", 31007, func(p *v1.Pod) {
			p.Status.Conditions[0].Status = v1.ConditionFalse
		})}, []string{"http 10.87.0.11:31007 false/false/false agent-1 web-1"}},
		{"not ready but published", hostPrivateService(func(s *v1.Service) { s.Spec.PublishNotReadyAddresses = true }),
			[]*v1.Pod{webPod("web-1", "agent-1", "10.87.0.11", 31007, func(p *v1.Pod) { p.Status.Conditions[0].Status = v1.ConditionFalse })},
			[]string{"http 10.87.0.11:31007 true/true/false agent-1 web-1"}},
		{"terminating", hostPrivateService(), []*v1.Pod{webPod("web-1", "agent-1", "10.87.0.11", 31007, func(p *v1.Pod) {
			p.DeletionTimestamp = &metav1.Time{}
		})}, []string{"http 10.87.0.11:31007 false/true/true agent-1 web-1"}},
		{"not placed, not started, ended: none", hostPrivateService(), []*v1.Pod{
			webPod("pending", "", "", 31007),
			webPod("starting", "agent-1", "", 31007),
			webPod("failed", "agent-1", "10.87.0.11", 31007, func(p *v1.Pod) { p.Status.Phase = v1.PodFailed }),
			webPod("done", "agent-1", "10.87.0.11", 31007, func(p *v1.Pod) { p.Status.Phase = v1.PodSucceeded }),
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss, problems := Desired(tc.svc, tc.pods)
			if len(problems) > 0 {
				t.Errorf("problems: %q", problems)
			}
			if got := endpoints(ss); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("endpoints\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for _, s := range ss {
				if s.Labels[discoveryv1.LabelManagedBy] != taskinfo.HostPrivateManagedBy || s.Labels[discoveryv1.LabelServiceName] != "web" {
					t.Errorf("slice %s labels %v", s.Name, s.Labels)
				}
				if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != "svc-uid" || !*s.OwnerReferences[0].Controller {
					t.Errorf("slice %s owners %+v, want the Service as controller", s.Name, s.OwnerReferences)
				}
				if s.AddressType != discoveryv1.AddressTypeIPv4 {
					t.Errorf("slice %s address type %s", s.Name, s.AddressType)
				}
			}
		})
	}
}

// TestPodsOnOtherHostPortsGetSlicesOfTheirOwn: an EndpointSlice has one
// set of ports, so pods with different wildcard host ports are in
// different slices, and a pod that moves to another host port moves to
// another slice name.
func TestPodsOnOtherHostPortsGetSlicesOfTheirOwn(t *testing.T) {
	svc := hostPrivateService()
	ss, _ := Desired(svc, []*v1.Pod{webPod("web-1", "agent-1", "10.87.0.11", 31007), webPod("web-2", "agent-2", "10.87.0.12", 31008)})
	if len(ss) != 2 || ss[0].Name == ss[1].Name {
		t.Fatalf("%d slices %v, want 2 of their own names", len(ss), endpoints(ss))
	}
	moved, _ := Desired(svc, []*v1.Pod{webPod("web-1", "agent-1", "10.87.0.11", 31007), webPod("web-2", "agent-1", "10.87.0.11", 31009)})
	if moved[0].Name != ss[0].Name || moved[1].Name == ss[1].Name {
		t.Errorf("slices %s, %s after web-2 moved; before %s, %s", moved[0].Name, moved[1].Name, ss[0].Name, ss[1].Name)
	}
}

// TestManyPodsAreSplitIntoSlicesOf100: as the stock controller, no slice
// holds more than 100 endpoints.
func TestManyPodsAreSplitIntoSlicesOf100(t *testing.T) {
	var pods []*v1.Pod
	for i := range 250 {
		pods = append(pods, webPod(fmt.Sprintf("web-%03d", i), "agent-1", "10.87.0.11", 31007))
	}
	ss, _ := Desired(hostPrivateService(), pods)
	if len(ss) != 3 || len(ss[0].Endpoints) != 100 || len(ss[2].Endpoints) != 50 {
		t.Errorf("%d slices, want 100+100+50 endpoints", len(ss))
	}
}

// TestPodWithoutHostPortIsAProblem: a selected pod whose targeted port has
// no host port cannot serve at its agent's address; the problem says
// which pod and port and how to fix it.
func TestPodWithoutHostPortIsAProblem(t *testing.T) {
	p := webPod("web-1", "agent-1", "10.87.0.11", 0, func(p *v1.Pod) { p.Annotations = nil })
	ss, problems := Desired(hostPrivateService(), []*v1.Pod{p})
	if len(ss) != 0 {
		t.Errorf("slices %v for a pod without host port", endpoints(ss))
	}
	if len(problems) != 1 || !strings.Contains(problems[0], "pod web-1 has no host port for Service port http (targetPort 8080)") ||
		!strings.Contains(problems[0], taskinfo.WildcardPortsAnnotation) {
		t.Errorf("problems %q", problems)
	}
}

// TestSelectorValidation: every mistake in a host-private Service is
// refused with what is wrong and what to do.
func TestSelectorValidation(t *testing.T) {
	if _, ok, err := Selector(hostPrivateService(func(s *v1.Service) { s.Annotations = nil })); ok || err != nil {
		t.Errorf("a Service without the annotation: ok=%v err=%v", ok, err)
	}
	if sel, ok, err := Selector(hostPrivateService()); !ok || err != nil || sel.String() != "app=web" {
		t.Errorf("a host-private Service: sel=%v ok=%v err=%v", sel, ok, err)
	}
	for name, tc := range map[string]struct {
		mutate func(*v1.Service)
		want   string
	}{
		"bad selector": {func(s *v1.Service) { s.Annotations[taskinfo.HostPrivateSelectorAnnotation] = "app in web" },
			`annotation k8sm.io/host-private-selector: "app in web" is not a label selector`},
		"empty selector": {func(s *v1.Service) { s.Annotations[taskinfo.HostPrivateSelectorAnnotation] = "" },
			`selects every pod of the namespace; name the pods by their labels, e.g. "app=web"`},
		"spec.selector too": {func(s *v1.Service) { s.Spec.Selector = map[string]string{"app": "web"} },
			"the Service also has spec.selector"},
		"ExternalName": {func(s *v1.Service) { s.Spec.Type = v1.ServiceTypeExternalName },
			"an ExternalName Service has no endpoints"},
		"misspelt key": {func(s *v1.Service) { s.Annotations["k8sm.io/host-private-selecter"] = "app=web" },
			"annotation k8sm.io/host-private-selecter: k8sm reads no such annotation on Services (it reads k8sm.io/host-private-selector)"},
	} {
		_, _, err := Selector(hostPrivateService(tc.mutate))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to say %q", name, err, tc.want)
		}
	}
	// A misspelt key alone is an error, not a host-private Service.
	_, ok, err := Selector(&v1.Service{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"k8sm.io/host-private": "true"}}})
	if ok || err == nil {
		t.Errorf("a misspelt key alone: ok=%v err=%v", ok, err)
	}
}
