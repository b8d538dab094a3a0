package podresources

import (
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// HostPortsOf lists the host ports the pod binds as its spec stands (fixed
// host ports, container ports under host networking), sorted and without
// duplicates. Apply the pod's assignments first to include its wildcard
// ports.
func HostPortsOf(pod *v1.Pod) []uint64 { return fixedHostPorts(pod) }

// PortRef names one container port of a pod.
type PortRef struct {
	Container     string      `json:"container"`
	ContainerPort int32       `json:"containerPort"`
	Protocol      v1.Protocol `json:"protocol,omitempty"`
}

// PortAssignment is a wildcard port and the host port chosen for it.
type PortAssignment struct {
	PortRef
	HostPort int32 `json:"hostPort"`
}

// WildcardPortsOf lists the pod's container ports that get a host port chosen
// by k8sm, in a stable order (init containers, then containers, each in spec
// order). A pod must opt in with taskinfo.WildcardPortsAnnotation; host networking pods
// never get wildcard ports because their host port is their container port.
func WildcardPortsOf(pod *v1.Pod) []PortRef {
	if pod.Annotations[taskinfo.WildcardPortsAnnotation] != "true" || pod.Spec.HostNetwork {
		return nil
	}
	var refs []PortRef
	visit := func(cs []v1.Container) {
		for i := range cs {
			for _, p := range cs[i].Ports {
				if p.HostPort != 0 {
					continue
				}
				proto := p.Protocol
				if proto == "" {
					proto = v1.ProtocolTCP
				}
				refs = append(refs, PortRef{Container: cs[i].Name, ContainerPort: p.ContainerPort, Protocol: proto})
			}
		}
	}
	visit(pod.Spec.InitContainers)
	visit(pod.Spec.Containers)
	return refs
}

// AssignWildcardPorts pairs the pod's wildcard ports with chosen host ports
// (as returned by Resources.Claim, in the same order).
func AssignWildcardPorts(pod *v1.Pod, hostPorts []uint64) ([]PortAssignment, error) {
	refs := WildcardPortsOf(pod)
	if len(refs) != len(hostPorts) {
		return nil, fmt.Errorf("pod %s/%s has %d wildcard ports but %d host ports were chosen", pod.Namespace, pod.Name, len(refs), len(hostPorts))
	}
	out := make([]PortAssignment, len(refs))
	for i, r := range refs {
		if hostPorts[i] == 0 || hostPorts[i] > 65535 {
			return nil, fmt.Errorf("host port %d chosen for %s:%d is outside 1-65535", hostPorts[i], r.Container, r.ContainerPort)
		}
		out[i] = PortAssignment{PortRef: r, HostPort: int32(hostPorts[i])}
	}
	return out, nil
}

// RecordPortAssignments stores the assignments on the pod's annotations.
func RecordPortAssignments(pod *v1.Pod, as []PortAssignment) error {
	if len(as) == 0 {
		return nil
	}
	b, err := json.Marshal(as)
	if err != nil {
		return fmt.Errorf("encoding host port assignments of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[taskinfo.HostPortsAnnotation] = string(b)
	return nil
}

// PortAssignmentsOf reads the assignments recorded on a pod.
func PortAssignmentsOf(pod *v1.Pod) ([]PortAssignment, error) {
	v, ok := pod.Annotations[taskinfo.HostPortsAnnotation]
	if !ok {
		return nil, nil
	}
	var as []PortAssignment
	if err := json.Unmarshal([]byte(v), &as); err != nil {
		return nil, fmt.Errorf("decoding annotation %s of pod %s/%s: %w", taskinfo.HostPortsAnnotation, pod.Namespace, pod.Name, err)
	}
	return as, nil
}

// ApplyPortAssignments sets the recorded host ports on the pod's containers,
// which is how the pod the kubelet runs learns them.
func ApplyPortAssignments(pod *v1.Pod, as []PortAssignment) {
	set := func(cs []v1.Container) {
		for i := range cs {
			for j := range cs[i].Ports {
				p := &cs[i].Ports[j]
				proto := p.Protocol
				if proto == "" {
					proto = v1.ProtocolTCP
				}
				for _, a := range as {
					if a.Container == cs[i].Name && a.ContainerPort == p.ContainerPort && a.Protocol == proto && p.HostPort == 0 {
						p.HostPort = a.HostPort
					}
				}
			}
		}
	}
	set(pod.Spec.InitContainers)
	set(pod.Spec.Containers)
}
