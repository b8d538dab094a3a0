package hostprivate

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// maxEndpoints per slice, as the stock EndpointSlice controller's default
// (--max-endpoints-per-slice).
const maxEndpoints = 100

// Selector reads a host-private Service: ok is false for a Service that is
// not one (no annotation); err says what is wrong with one that is and
// what to do. A Service that is one must leave spec.selector empty: with
// a selector the stock EndpointSlice controller publishes the pods' own
// addresses beside k8sm's, and kube-proxy would send part of the traffic
// to addresses that are not routable.
func Selector(svc *v1.Service) (sel labels.Selector, ok bool, err error) {
	var errs []error
	for key := range svc.Annotations {
		if prefix, _, found := strings.Cut(key, "/"); found && prefix == taskinfo.AnnotationPrefix && !slices.Contains(taskinfo.ServiceAnnotations, key) {
			errs = append(errs, fmt.Errorf("annotation %s: k8sm reads no such annotation on Services (it reads %s): remove it or correct its name", key, strings.Join(taskinfo.ServiceAnnotations, ", ")))
		}
	}
	v, ok := svc.Annotations[taskinfo.HostPrivateSelectorAnnotation]
	if !ok {
		return nil, false, errors.Join(errs...)
	}
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("annotation %s: "+format, append([]any{taskinfo.HostPrivateSelectorAnnotation}, a...)...))
	}
	sel, perr := labels.Parse(v)
	switch {
	case perr != nil:
		bad("%q is not a label selector (%v); name the pods by their labels, e.g. %q", v, perr, "app=web")
	case sel.Empty():
		bad("%q selects every pod of the namespace; name the pods by their labels, e.g. %q", v, "app=web")
	}
	if len(svc.Spec.Selector) > 0 {
		bad("the Service also has spec.selector, so the stock EndpointSlice controller publishes its pods' own addresses beside the host ports; remove spec.selector (the annotation takes its place)")
	}
	if svc.Spec.Type == v1.ServiceTypeExternalName {
		bad("an ExternalName Service has no endpoints; use type ClusterIP, NodePort or LoadBalancer")
	}
	if len(errs) > 0 {
		return nil, true, errors.Join(errs...)
	}
	return sel, true, nil
}

// endpointKey groups endpoints into slices: one address family and one set
// of ports per slice, as EndpointSlices require.
type endpointKey struct {
	family discoveryv1.AddressType
	ports  string // canonical form of the ports
}

// Desired computes the EndpointSlices of a host-private Service from the
// pods its selector names: for each pod placed on an agent and not ended,
// one endpoint at the agent's address (the pod's hostIP) with, for each
// Service port, the host port Mesos allocated to the container port the
// targetPort names (a fixed hostPort from the spec, or a wildcard one k8sm
// recorded in k8sm.io/host-ports). Problems lists what keeps a pod or one
// of its ports out, for the Service's events.
func Desired(svc *v1.Service, pods []*v1.Pod) (out []*discoveryv1.EndpointSlice, problems []string) {
	slices.SortFunc(pods, func(a, b *v1.Pod) int { return strings.Compare(a.Name, b.Name) })
	groups := map[endpointKey][]discoveryv1.Endpoint{}
	ports := map[endpointKey][]discoveryv1.EndpointPort{}
	var keys []endpointKey
	for _, pod := range pods {
		if pod.Spec.NodeName == "" || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
			continue
		}
		addr, err := netip.ParseAddr(pod.Status.HostIP)
		if err != nil {
			// Not started by its kubelet yet: the agent's address is not
			// known, and the pod does not serve anyway.
			continue
		}
		eps, missing, err := endpointPorts(svc, pod)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		for _, m := range missing {
			problems = append(problems, fmt.Sprintf("pod %s has no host port for Service port %s (targetPort %s): give that container port a hostPort, a fixed one or 0 with the pod annotation %s: \"true\"",
				pod.Name, portName(m), m.TargetPort.String(), taskinfo.WildcardPortsAnnotation))
		}
		if len(eps) == 0 {
			continue
		}
		family := discoveryv1.AddressTypeIPv4
		if addr.Is6() && !addr.Is4In6() {
			family = discoveryv1.AddressTypeIPv6
		}
		k := endpointKey{family: family, ports: canonical(eps)}
		if _, seen := groups[k]; !seen {
			keys = append(keys, k)
			ports[k] = eps
		}
		groups[k] = append(groups[k], endpoint(svc, pod, addr.Unmap().String()))
	}
	slices.SortFunc(keys, func(a, b endpointKey) int {
		return strings.Compare(string(a.family)+a.ports, string(b.family)+b.ports)
	})
	for _, k := range keys {
		eps := groups[k]
		for i := 0; len(eps) > 0; i++ {
			n := min(len(eps), maxEndpoints)
			out = append(out, newSlice(svc, k, i, ports[k], eps[:n]))
			eps = eps[n:]
		}
	}
	return out, problems
}

// endpointPorts resolves each Service port to the host port of the pod's
// container port it targets; missing lists the ports the pod has no host
// port for.
func endpointPorts(svc *v1.Service, pod *v1.Pod) (eps []discoveryv1.EndpointPort, missing []v1.ServicePort, err error) {
	assigned, err := podresources.PortAssignmentsOf(pod)
	if err != nil {
		return nil, nil, err
	}
	for _, sp := range svc.Spec.Ports {
		proto := sp.Protocol
		if proto == "" {
			proto = v1.ProtocolTCP
		}
		hostPort := hostPortFor(pod, sp, proto, assigned)
		if hostPort == 0 {
			missing = append(missing, sp)
			continue
		}
		eps = append(eps, discoveryv1.EndpointPort{
			Name: ptr.To(sp.Name), Protocol: ptr.To(proto), Port: ptr.To(hostPort), AppProtocol: sp.AppProtocol,
		})
	}
	return eps, missing, nil
}

// hostPortFor finds the container port a Service port targets (by number,
// or by name as the stock controller does; the Service port's own number
// when targetPort is unset) and its host port: the spec's, or the one k8sm
// recorded for a wildcard port. 0: none.
func hostPortFor(pod *v1.Pod, sp v1.ServicePort, proto v1.Protocol, assigned []podresources.PortAssignment) int32 {
	for _, c := range pod.Spec.Containers {
		for _, cp := range c.Ports {
			cproto := cp.Protocol
			if cproto == "" {
				cproto = v1.ProtocolTCP
			}
			if cproto != proto || !targets(sp, cp) {
				continue
			}
			if cp.HostPort != 0 {
				return cp.HostPort
			}
			for _, a := range assigned {
				if a.Container == c.Name && a.ContainerPort == cp.ContainerPort && a.Protocol == cproto {
					return a.HostPort
				}
			}
		}
	}
	return 0
}

func targets(sp v1.ServicePort, cp v1.ContainerPort) bool {
	switch {
	case sp.TargetPort.StrVal != "":
		return cp.Name == sp.TargetPort.StrVal
	case sp.TargetPort.IntVal != 0:
		return cp.ContainerPort == sp.TargetPort.IntVal
	default:
		return cp.ContainerPort == sp.Port
	}
}

func portName(sp v1.ServicePort) string {
	if sp.Name != "" {
		return sp.Name
	}
	return fmt.Sprint(sp.Port)
}

func canonical(eps []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range eps {
		fmt.Fprintf(&b, "%s/%s/%d;", *p.Name, *p.Protocol, *p.Port)
	}
	return b.String()
}

// endpoint is a pod's endpoint: ready when the pod is (or the Service
// publishes not-ready addresses) and not terminating; serving while the
// pod is ready, terminating or not, as the stock controller reports it.
func endpoint(svc *v1.Service, pod *v1.Pod, addr string) discoveryv1.Endpoint {
	podReady := false
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodReady {
			podReady = c.Status == v1.ConditionTrue
		}
	}
	terminating := pod.DeletionTimestamp != nil
	return discoveryv1.Endpoint{
		Addresses: []string{addr},
		Conditions: discoveryv1.EndpointConditions{
			Ready:       ptr.To(svc.Spec.PublishNotReadyAddresses || (podReady && !terminating)),
			Serving:     ptr.To(svc.Spec.PublishNotReadyAddresses || podReady),
			Terminating: ptr.To(terminating),
		},
		NodeName:  ptr.To(pod.Spec.NodeName),
		TargetRef: &v1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
}

// newSlice names a slice after its Service, its key and its chunk, so that
// the same pods give the same slices (the controller updates in place) and
// a pod that moves to other host ports gives a slice of another name.
func newSlice(svc *v1.Service, k endpointKey, chunk int, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	sum := sha256.Sum256([]byte(string(k.family) + "|" + k.ports))
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace,
			Name:      fmt.Sprintf("%s-hostports-%s-%d", svc.Name, hex.EncodeToString(sum[:])[:10], chunk),
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   taskinfo.HostPrivateManagedBy,
			},
			// Not blocking the Service's deletion: that would need the
			// right to set finalizers on Services, and the garbage
			// collector removes the slices after it anyway.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: ptr.To(true),
			}},
		},
		AddressType: k.family,
		Endpoints:   slices.Clone(eps),
		Ports:       ports,
	}
}
