package podresources

import (
	"reflect"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

func rl(kv ...string) v1.ResourceList {
	out := v1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[v1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func ctr(name string, requests, limits v1.ResourceList, ports ...v1.ContainerPort) v1.Container {
	return v1.Container{Name: name, Resources: v1.ResourceRequirements{Requests: requests, Limits: limits}, Ports: ports}
}

func sidecar(c v1.Container) v1.Container {
	always := v1.ContainerRestartPolicyAlways
	c.RestartPolicy = &always
	return c
}

func pod(containers []v1.Container, init ...v1.Container) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p", UID: "uid-1"},
		Spec:       v1.PodSpec{Containers: containers, InitContainers: init},
	}
}

func TestFromPodScalars(t *testing.T) {
	tests := []struct {
		name string
		pod  *v1.Pod
		want Scalars
	}{
		{
			name: "sum of containers",
			pod:  pod([]v1.Container{ctr("a", rl("cpu", "500m", "memory", "128Mi"), nil), ctr("b", rl("cpu", "1", "memory", "64Mi"), nil)}),
			want: Scalars{CPUs: 1500, MemMB: 192000},
		},
		{
			name: "limits where no request",
			pod:  pod([]v1.Container{ctr("a", rl("cpu", "250m"), rl("cpu", "2", "memory", "1Gi"))}),
			want: Scalars{CPUs: 250, MemMB: 1024000},
		},
		{
			name: "no requests at all asks for nothing",
			pod:  pod([]v1.Container{ctr("a", nil, nil)}),
			want: Scalars{},
		},
		{
			name: "init container larger than containers wins",
			pod: pod([]v1.Container{ctr("a", rl("cpu", "1", "memory", "100Mi"), nil)},
				ctr("init", rl("cpu", "3", "memory", "10Mi"), nil)),
			want: Scalars{CPUs: 3000, MemMB: 100000},
		},
		{
			// KEP-753: sidecars run beside later init containers and beside the
			// app containers, so they add to both.
			name: "restartable sidecar init containers",
			pod: pod([]v1.Container{ctr("app", rl("cpu", "1"), nil)},
				ctr("init1", rl("cpu", "2"), nil),
				sidecar(ctr("side", rl("cpu", "500m"), nil)),
				ctr("init2", rl("cpu", "2"), nil)),
			// init phase: max(2, 0.5+2) = 2.5; running: 1 + 0.5 = 1.5
			want: Scalars{CPUs: 2500},
		},
		{
			name: "sidecar counted with app containers when they dominate",
			pod: pod([]v1.Container{ctr("app", rl("cpu", "4"), nil)},
				sidecar(ctr("side", rl("cpu", "1"), nil)),
				ctr("init", rl("cpu", "2"), nil)),
			want: Scalars{CPUs: 5000},
		},
		{
			name: "pod overhead is added",
			pod: func() *v1.Pod {
				p := pod([]v1.Container{ctr("a", rl("cpu", "1", "memory", "100Mi"), nil)})
				p.Spec.Overhead = rl("cpu", "250m", "memory", "20Mi")
				return p
			}(),
			want: Scalars{CPUs: 1250, MemMB: 120000},
		},
		{
			// What Mesos charges the task: ephemeral storage of the
			// containers and of the overhead (a RuntimeClass's) is disk.
			name: "ephemeral storage and overhead, sidecar included, are disk",
			pod: func() *v1.Pod {
				p := pod([]v1.Container{ctr("a", rl("cpu", "100m", "ephemeral-storage", "100Mi"), nil)},
					sidecar(ctr("side", rl("cpu", "50m", "ephemeral-storage", "20Mi"), nil)))
				p.Spec.Overhead = rl("cpu", "100m", "memory", "16Mi", "ephemeral-storage", "10Mi")
				return p
			}(),
			want: Scalars{CPUs: 250, MemMB: 16000, DiskMB: 130000},
		},
		{
			name: "pod-level requests replace the container sum",
			pod: func() *v1.Pod {
				p := pod([]v1.Container{ctr("a", rl("cpu", "100m"), nil), ctr("b", nil, nil)})
				p.Spec.Resources = &v1.ResourceRequirements{Requests: rl("cpu", "2", "memory", "1Gi")}
				return p
			}(),
			want: Scalars{CPUs: 2000, MemMB: 1024000},
		},
		{
			name: "ephemeral storage is disk; decimal memory rounds up to a thousandth MB",
			pod:  pod([]v1.Container{ctr("a", rl("ephemeral-storage", "1Gi", "memory", "100M"), nil)}),
			// 100e6 bytes = 95.367431640625 MB
			want: Scalars{DiskMB: 1024000, MemMB: 95368},
		},
		{
			name: "limits-only init container counts its limits as its requests",
			pod: pod([]v1.Container{ctr("a", rl("cpu", "1", "memory", "64Mi"), nil)},
				ctr("init", nil, rl("cpu", "2", "memory", "32Mi"))),
			want: Scalars{CPUs: 2000, MemMB: 64000},
		},
		{
			name: "gpus of an init container are reused by the app containers, not added",
			pod: pod([]v1.Container{ctr("a", nil, rl("nvidia.com/gpu", "1"))},
				ctr("init", nil, rl("nvidia.com/gpu", "1"))),
			want: Scalars{GPUs: 1000},
		},
		{
			name: "gpus from nvidia.com/gpu limits",
			pod:  pod([]v1.Container{ctr("a", nil, rl("nvidia.com/gpu", "2")), ctr("b", rl("nvidia.com/gpu", "1"), nil)}),
			want: Scalars{GPUs: 3000},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.pod.DeepCopy()
			d, err := FromPod(tt.pod)
			if err != nil {
				t.Fatalf("FromPod: %v", err)
			}
			if d.Scalars != tt.want {
				t.Errorf("scalars = %+v, want %+v", d.Scalars, tt.want)
			}
			if !reflect.DeepEqual(before, tt.pod) {
				t.Errorf("FromPod modified the pod")
			}
		})
	}
}

func TestFromPodRejects(t *testing.T) {
	neg := pod([]v1.Container{ctr("a", rl("cpu", "-1"), nil)})
	if _, err := FromPod(neg); err == nil || !strings.Contains(err.Error(), "negative cpu") {
		t.Errorf("negative cpu: err = %v", err)
	}
	half := pod([]v1.Container{ctr("a", rl("nvidia.com/gpu", "500m"), nil)})
	if _, err := FromPod(half); err == nil || !strings.Contains(err.Error(), "GPUs must be whole") {
		t.Errorf("fractional gpu: err = %v", err)
	}
	bad := pod([]v1.Container{ctr("a", nil, nil, v1.ContainerPort{ContainerPort: 80, HostPort: -3})})
	if _, err := FromPod(bad); err == nil || !strings.Contains(err.Error(), "outside 1-65535") {
		t.Errorf("bad host port: err = %v", err)
	}
}

func TestFromPodPorts(t *testing.T) {
	p := pod([]v1.Container{
		ctr("web", nil, nil,
			v1.ContainerPort{ContainerPort: 80, HostPort: 8080, Protocol: v1.ProtocolTCP},
			v1.ContainerPort{ContainerPort: 80, HostPort: 8080, Protocol: v1.ProtocolUDP},
			v1.ContainerPort{ContainerPort: 9090},
		),
		ctr("metrics", nil, nil, v1.ContainerPort{ContainerPort: 9100, Protocol: v1.ProtocolUDP}),
	}, ctr("init", nil, nil, v1.ContainerPort{ContainerPort: 53, HostPort: 5353}))

	d, err := FromPod(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint64{5353, 8080}; !reflect.DeepEqual(d.HostPorts, want) {
		t.Errorf("host ports = %v, want %v", d.HostPorts, want)
	}
	if d.WildcardPorts != 0 {
		t.Errorf("without opt-in, wildcard ports = %d, want 0", d.WildcardPorts)
	}

	p.Annotations = map[string]string{taskinfo.WildcardPortsAnnotation: "true"}
	d, err = FromPod(p)
	if err != nil {
		t.Fatal(err)
	}
	if d.WildcardPorts != 2 {
		t.Errorf("with opt-in, wildcard ports = %d, want 2", d.WildcardPorts)
	}
	want := []PortRef{{"web", 9090, v1.ProtocolTCP}, {"metrics", 9100, v1.ProtocolUDP}}
	if got := WildcardPortsOf(p); !reflect.DeepEqual(got, want) {
		t.Errorf("WildcardPortsOf = %v, want %v", got, want)
	}

	hn := pod([]v1.Container{ctr("a", nil, nil, v1.ContainerPort{ContainerPort: 7000})})
	hn.Spec.HostNetwork = true
	hn.Annotations = map[string]string{taskinfo.WildcardPortsAnnotation: "true"}
	d, err = FromPod(hn)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.HostPorts, []uint64{7000}) || d.WildcardPorts != 0 {
		t.Errorf("host network pod: ports %v wildcard %d, want [7000] and 0", d.HostPorts, d.WildcardPorts)
	}
}

func TestFromPodRoles(t *testing.T) {
	p := pod([]v1.Container{ctr("a", nil, nil)})
	p.Annotations = map[string]string{taskinfo.RolesAnnotation: " web, batch ,web"}
	d, err := FromPod(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"batch", "web"}; !reflect.DeepEqual(d.Roles, want) {
		t.Errorf("roles = %v, want %v", d.Roles, want)
	}
	if d.AllowsRole("*") || !d.AllowsRole("web") {
		t.Errorf("AllowsRole disagrees with roles %v", d.Roles)
	}
}

func TestPortAssignmentsRoundTrip(t *testing.T) {
	p := pod([]v1.Container{ctr("web", nil, nil, v1.ContainerPort{ContainerPort: 80}, v1.ContainerPort{ContainerPort: 443, HostPort: 443})})
	p.Annotations = map[string]string{taskinfo.WildcardPortsAnnotation: "true"}
	if _, err := AssignWildcardPorts(p, []uint64{31000, 31001}); err == nil {
		t.Errorf("assigning two ports to one wildcard port succeeded")
	}
	as, err := AssignWildcardPorts(p, []uint64{31000})
	if err != nil {
		t.Fatal(err)
	}
	if err := RecordPortAssignments(p, as); err != nil {
		t.Fatal(err)
	}
	got, err := PortAssignmentsOf(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, as) {
		t.Errorf("read back %v, want %v", got, as)
	}
	ApplyPortAssignments(p, got)
	if hp := p.Spec.Containers[0].Ports[0].HostPort; hp != 31000 {
		t.Errorf("applied host port = %d, want 31000", hp)
	}
	if hp := p.Spec.Containers[0].Ports[1].HostPort; hp != 443 {
		t.Errorf("fixed host port changed to %d", hp)
	}
}

// TestAnnotationsValidated: every k8sm.io/ annotation a pod's author writes
// is checked, and a mistake is an error saying what to fix.
func TestAnnotationsValidated(t *testing.T) {
	for _, tc := range []struct {
		ann      map[string]string
		nodeName string
		want     string
	}{
		{map[string]string{"k8sm.io/roles": "analytics, *"}, "", ""},
		{map[string]string{"k8sm.io/roles": ""}, "", "annotation k8sm.io/roles: a role name must not be empty"},
		{map[string]string{"k8sm.io/roles": "a,,b"}, "", "must not be empty"},
		{map[string]string{"k8sm.io/roles": "team a"}, "", `role "team a" contains whitespace`},
		{map[string]string{"k8sm.io/roles": "../etc"}, "", `path component ".."`},
		{map[string]string{"k8sm.io/role": "gpu"}, "", "annotation k8sm.io/role: k8sm reads no such annotation on pods (it reads k8sm.io/roles, k8sm.io/wildcard-ports, k8sm.io/host-ports, k8sm.io/task-id)"},
		{map[string]string{"k8sm.io/wildcard-ports": "yes"}, "", `annotation k8sm.io/wildcard-ports: "yes" is neither "true" nor "false"`},
		{map[string]string{"k8sm.io/host-ports": `[{"container":"c","containerPort":80,"hostPort":22}]`}, "", "annotation k8sm.io/host-ports: k8sm writes it when it places a pod"},
		{map[string]string{"k8sm.io/host-ports": `[{"container":"c","containerPort":80,"hostPort":31000}]`}, "agent-1", ""},
		{map[string]string{"k8sm.io/host-ports": `[{"container":"c","containerPort":80,"hostPort":70000}]`}, "agent-1", "outside 1-65535"},
		{map[string]string{"k8sm.io/host-ports": `nope`}, "agent-1", "not a JSON list"},
		{map[string]string{"k8sm.io/task-id": "pod.u.r1"}, "", "annotation k8sm.io/task-id: k8sm writes it when it binds the pod"},
		{map[string]string{"k8sm.io/task-id": "pod.u.r1"}, "agent-1", ""},
		{map[string]string{"e2e.k8sm.io/version": "2", "example.com/x": "y"}, "", ""},
	} {
		pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", Annotations: tc.ann}, Spec: v1.PodSpec{NodeName: tc.nodeName}}
		_, err := FromPod(pod)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.ann, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one saying %q", tc.ann, err, tc.want)
		}
	}
}
