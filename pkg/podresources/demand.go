package podresources

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// GPUResource is the extended resource name that maps to Mesos "gpus".
const GPUResource v1.ResourceName = "nvidia.com/gpu"

// DefaultPodCPUs and DefaultPodMemMB are what a pod that requests no CPU or no
// memory is charged (BestEffort pods, the commonest pods of tutorials): Mesos
// refuses a task without resources, and a container without requests uses
// some anyway. They are the original k8sm's defaults for containers without
// limits (0.25 cpus, 64 MB).
const (
	DefaultPodCPUs  Milli = 250
	DefaultPodMemMB Milli = 64 * 1000
)

// DefaultPodScalars are DefaultPodCPUs and DefaultPodMemMB together.
var DefaultPodScalars = Scalars{CPUs: DefaultPodCPUs, MemMB: DefaultPodMemMB}

// Demand is what one pod needs from one agent, in Mesos terms.
type Demand struct {
	Scalars
	// HostPorts are the fixed host ports, sorted and without duplicates (a
	// TCP and a UDP port with the same number use one Mesos port).
	HostPorts []uint64
	// WildcardPorts is how many more ports k8sm must choose from the offer.
	WildcardPorts int
	// Roles the pod may draw from; empty means any role. FromPod gives the
	// pod's k8sm.io/roles; the role policy (pkg/rolepolicy) turns that into
	// the roles it may really use before anything is placed.
	Roles []string
}

// AllowsRole reports whether the demand may be met from role's resources.
func (d Demand) AllowsRole(role string) bool {
	return len(d.Roles) == 0 || slices.Contains(d.Roles, role)
}

// Validate rejects demands no agent can ever satisfy because they make no
// sense, as opposed to demands that are merely too big today.
func (d Demand) Validate() error {
	if name := d.Scalars.Negative(); name != "" {
		return fmt.Errorf("negative %s requested", name)
	}
	if d.WildcardPorts < 0 {
		return fmt.Errorf("negative number of wildcard ports (%d) requested", d.WildcardPorts)
	}
	for _, p := range d.HostPorts {
		if p == 0 || p > 65535 {
			return fmt.Errorf("host port %d is outside 1-65535", p)
		}
	}
	if d.GPUs%1000 != 0 {
		return fmt.Errorf("gpus must be whole, got %s", d.GPUs)
	}
	return nil
}

// WithDefaults charges def's cpus and mem where the demand has none; the
// other resources have no default (a pod without disk or GPUs needs none).
func (d Demand) WithDefaults(def Scalars) Demand {
	if d.CPUs == 0 {
		d.CPUs = def.CPUs
	}
	if d.MemMB == 0 {
		d.MemMB = def.MemMB
	}
	return d
}

// String is a compact log form of the demand.
func (d Demand) String() string {
	s := Resources{Scalars: d.Scalars, Ports: PortsOf(d.HostPorts...)}.String()
	if d.WildcardPorts > 0 {
		s += fmt.Sprintf("; wildcard ports:%d", d.WildcardPorts)
	}
	if len(d.Roles) > 0 {
		s += "; roles:" + strings.Join(d.Roles, ",")
	}
	return s
}

// ToResources is the demand without wildcard ports as a Resources value.
func (d Demand) ToResources() Resources {
	return Resources{Scalars: d.Scalars, Ports: PortsOf(d.HostPorts...)}
}

// FromPod computes the pod's demand exactly as the scheduler's NodeResourcesFit
// plugin computes requests (with PodLevelResources enabled, its default since
// 1.34), so that k8sm and the stock plugins agree about what fits. The pod is
// not modified.
func FromPod(pod *v1.Pod) (Demand, error) {
	if err := ValidateAnnotations(pod); err != nil {
		return Demand{}, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	reqs := resourcehelper.PodRequests(withDefaultedRequests(pod), resourcehelper.PodResourcesOptions{})

	var d Demand
	var err error
	for name, q := range reqs {
		if q.Sign() < 0 {
			return Demand{}, fmt.Errorf("pod %s/%s requests negative %s (%s)", pod.Namespace, pod.Name, name, q.String())
		}
	}
	cpu := quantityOr0(reqs, v1.ResourceCPU)
	d.CPUs = Milli(cpu.MilliValue())
	if d.MemMB, err = megabytes(quantityOr0(reqs, v1.ResourceMemory)); err != nil {
		return Demand{}, fmt.Errorf("pod %s/%s memory: %w", pod.Namespace, pod.Name, err)
	}
	if d.DiskMB, err = megabytes(quantityOr0(reqs, v1.ResourceEphemeralStorage)); err != nil {
		return Demand{}, fmt.Errorf("pod %s/%s ephemeral-storage: %w", pod.Namespace, pod.Name, err)
	}
	gpus := quantityOr0(reqs, GPUResource)
	if gpus.MilliValue()%1000 != 0 {
		return Demand{}, fmt.Errorf("pod %s/%s requests %s %s: GPUs must be whole", pod.Namespace, pod.Name, gpus.String(), GPUResource)
	}
	d.GPUs = Milli(gpus.MilliValue())

	d.HostPorts = fixedHostPorts(pod)
	d.WildcardPorts = len(WildcardPortsOf(pod))
	d.Roles = rolesOf(pod)
	if err := d.Validate(); err != nil {
		return Demand{}, fmt.Errorf("pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return d, nil
}

func quantityOr0(l v1.ResourceList, name v1.ResourceName) resource.Quantity {
	if q, ok := l[name]; ok {
		return q
	}
	return resource.Quantity{}
}

// megabytes converts bytes to Mesos megabytes (2^20 bytes) in thousandths,
// rounding up: a pod given less memory than it asked for is OOM-killed, one
// given a fraction of a kilobyte more is not.
func megabytes(q resource.Quantity) (Milli, error) {
	b, ok := q.AsInt64()
	if !ok {
		// Fractions of a byte (e.g. "0.5") or values beyond int64.
		b = q.Value()
	}
	if b < 0 {
		return 0, fmt.Errorf("negative amount %s", q.String())
	}
	const mb = 1 << 20
	whole, rest := b/mb, b%mb
	return Milli(whole*1000 + (rest*1000+mb-1)/mb), nil
}

// withDefaultedRequests mirrors the API server's defaulting (requests default
// to limits for each resource that has a limit but no request) for pods that
// never went through it, such as pods in tests or built by other programs. A
// pod read from the API server is returned unchanged in effect.
func withDefaultedRequests(pod *v1.Pod) *v1.Pod {
	needs := func(cs []v1.Container) bool {
		for i := range cs {
			for name := range cs[i].Resources.Limits {
				if _, ok := cs[i].Resources.Requests[name]; !ok {
					return true
				}
			}
		}
		return false
	}
	if !needs(pod.Spec.Containers) && !needs(pod.Spec.InitContainers) {
		return pod
	}
	fix := func(cs []v1.Container) []v1.Container {
		out := make([]v1.Container, len(cs))
		for i := range cs {
			out[i] = cs[i]
			if len(cs[i].Resources.Limits) == 0 {
				continue
			}
			reqs := make(v1.ResourceList, len(cs[i].Resources.Limits))
			for name, q := range cs[i].Resources.Limits {
				reqs[name] = q.DeepCopy()
			}
			for name, q := range cs[i].Resources.Requests {
				reqs[name] = q.DeepCopy()
			}
			out[i].Resources.Requests = reqs
		}
		return out
	}
	cp := *pod
	cp.Spec.Containers = fix(pod.Spec.Containers)
	cp.Spec.InitContainers = fix(pod.Spec.InitContainers)
	return &cp
}

// fixedHostPorts lists the host ports the pod binds. Unlike the scheduler's
// NodePorts plugin it also counts ports of ordinary init containers: the
// Mesos task holds its ports for its whole life, and an init container that
// binds a port another task holds would fail.
func fixedHostPorts(pod *v1.Pod) []uint64 {
	var ports []uint64
	visit := func(cs []v1.Container) {
		for i := range cs {
			for _, p := range cs[i].Ports {
				hp := p.HostPort
				if hp == 0 && pod.Spec.HostNetwork {
					// The API server defaults hostPort to containerPort with
					// host networking; do the same for undefaulted pods.
					hp = p.ContainerPort
				}
				if hp != 0 {
					ports = append(ports, uint64(uint32(hp)))
				}
			}
		}
	}
	visit(pod.Spec.InitContainers)
	visit(pod.Spec.Containers)
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	return slices.Compact(ports)
}

func rolesOf(pod *v1.Pod) []string {
	v, ok := pod.Annotations[taskinfo.RolesAnnotation]
	if !ok {
		return nil
	}
	roles, _ := parseRoles(v) // ValidateAnnotations checked it
	sort.Strings(roles)
	return slices.Compact(roles)
}
