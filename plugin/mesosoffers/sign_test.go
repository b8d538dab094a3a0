package mesosoffers

import (
	"context"
	"encoding/json"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/manifests"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

func batching(on bool) *MesosOffers {
	a, _ := argsFrom(nil)
	a.OpportunisticBatching = &on
	return &MesosOffers{args: a}
}

// signature combines the plugin's fragments as the framework does
// (frameworkImpl.SignPod: a map of key to value, marshalled to JSON).
func signature(t *testing.T, pl *MesosOffers, pod *v1.Pod) (string, *fwk.Status) {
	t.Helper()
	frags, st := pl.SignPod(context.Background(), pod)
	if !st.IsSuccess() {
		return "", st
	}
	m := map[string]any{}
	for _, f := range frags {
		m[f.Key] = f.Value
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatalf("fragments do not marshal: %v", err)
	}
	return string(b), nil
}

func TestSignPodRefusesUnlessBatchingIsOn(t *testing.T) {
	_, st := signature(t, batching(false), mkPod("1", "64Mi"))
	if st.Code() != fwk.Unschedulable {
		t.Fatalf("SignPod with the default args: %v, want Unschedulable (no batching)", st)
	}
	def, _ := argsFrom(nil)
	if *def.OpportunisticBatching {
		t.Fatal("opportunisticBatching is on by default")
	}
}

// The shipped configuration decodes (the plugin refuses unknown fields), and
// a profile that turns batching on also lets PodTopologySpread sign pods:
// otherwise the knob is on and nothing is ever batched.
func TestShippedConfigBatchesOnlyWhereItCan(t *testing.T) {
	cfg, err := manifests.ShippedSchedulerConfig()
	if err != nil {
		t.Fatal(err)
	}
	profiles, _ := cfg["profiles"].([]any)
	for _, p := range profiles {
		pm, _ := p.(map[string]any)
		pcs, _ := pm["pluginConfig"].([]any)
		batching, signable := false, false
		for _, pc := range pcs {
			pc, _ := pc.(map[string]any)
			raw, _ := pc["args"].(map[string]any)
			switch pc["name"] {
			case Name:
				delete(raw, "rolePolicyFile") // a path in the scheduler's container
				delete(raw, "tls")
				b, _ := json.Marshal(raw)
				a, err := argsFrom(&runtime.Unknown{Raw: b, ContentType: runtime.ContentTypeJSON})
				if err != nil {
					t.Fatalf("the shipped MesosOffers args: %v", err)
				}
				batching = *a.OpportunisticBatching
			case "PodTopologySpread":
				signable = raw["defaultingType"] == "List" && raw["defaultConstraints"] == nil
			}
		}
		if batching && !signable {
			t.Errorf("profile %v turns opportunisticBatching on but PodTopologySpread keeps default constraints: no pod would be batched", pm["schedulerName"])
		}
	}
}

func TestSignPodRefusesAnInvalidPod(t *testing.T) {
	p := mkPod("1", "64Mi")
	for k, v := range map[string]string{
		taskinfo.RolesAnnotation:     "no spaces allowed",
		taskinfo.HostPortsAnnotation: `[{"container":"c","containerPort":80,"hostPort":31000}]`, // only k8sm writes it, on placing
		"k8sm.io/role":               "web",                                                     // misspelt
	} {
		p.Annotations = map[string]string{k: v}
		if _, st := signature(t, batching(true), p); st.Code() != fwk.Unschedulable {
			t.Errorf("SignPod of a pending pod with %s: %q: %v, want Unschedulable (PreFilter refuses it)", k, v, st)
		}
	}
}

// Two pods with the same Mesos demand, roles, ports, namespace and
// tolerations share a signature whatever else differs (names, labels,
// images, the order ports and roles are written in); any difference in
// what MesosOffers' Filter reads gives another signature.
func TestSignPodSeparatesWhatMesosOffersFilters(t *testing.T) {
	pl := batching(true)
	base := func() *v1.Pod {
		p := mkPod("500m", "128Mi", v1.ContainerPort{ContainerPort: 80, HostPort: 8080}, v1.ContainerPort{ContainerPort: 81, HostPort: 8081})
		p.Annotations = map[string]string{taskinfo.RolesAnnotation: "web,batch"}
		p.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "web", Effect: v1.TaintEffectNoSchedule}}
		return p
	}
	want, st := signature(t, pl, base())
	if st != nil {
		t.Fatalf("SignPod: %v", st)
	}

	same := map[string]func(*v1.Pod){
		"another name, uid, labels and image": func(p *v1.Pod) {
			p.Labels = map[string]string{"app": "other"}
			p.Spec.Containers[0].Image = "other"
		},
		"roles in another order": func(p *v1.Pod) { p.Annotations[taskinfo.RolesAnnotation] = "batch,web" },
		"host ports in another order": func(p *v1.Pod) {
			c := &p.Spec.Containers[0]
			c.Ports[0], c.Ports[1] = c.Ports[1], c.Ports[0]
		},
		"wildcard-ports false, as without it": func(p *v1.Pod) { p.Annotations[taskinfo.WildcardPortsAnnotation] = "false" },
		"a limit equal to the request": func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Limits = v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m")}
		},
	}
	for name, change := range same {
		p := base()
		change(p)
		if got, st := signature(t, pl, p); st != nil || got != want {
			t.Errorf("%s: signature %s (%v), want the base pod's %s", name, got, st, want)
		}
	}

	differ := map[string]func(*v1.Pod){
		"more cpu": func(p *v1.Pod) { p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("501m") },
		"more memory": func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = resource.MustParse("129Mi")
		},
		"ephemeral storage": func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Requests[v1.ResourceEphemeralStorage] = resource.MustParse("1Gi")
		},
		"a gpu": func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"] = resource.MustParse("1")
		},
		"an init container asking for more cpu": func(p *v1.Pod) {
			p.Spec.InitContainers = []v1.Container{{Name: "init", Resources: v1.ResourceRequirements{
				Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("2")}}}}
		},
		"pod overhead": func(p *v1.Pod) {
			p.Spec.Overhead = v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}
		},
		"another host port":   func(p *v1.Pod) { p.Spec.Containers[0].Ports[1].HostPort = 8082 },
		"one host port fewer": func(p *v1.Pod) { p.Spec.Containers[0].Ports = p.Spec.Containers[0].Ports[:1] },
		"a host port of an init container": func(p *v1.Pod) {
			p.Spec.InitContainers = []v1.Container{{Name: "init", Ports: []v1.ContainerPort{{ContainerPort: 9, HostPort: 9090}}}}
		},
		"wildcard ports": func(p *v1.Pod) {
			p.Annotations[taskinfo.WildcardPortsAnnotation] = "true"
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, v1.ContainerPort{Name: "metrics", ContainerPort: 9100})
		},
		"another role": func(p *v1.Pod) { p.Annotations[taskinfo.RolesAnnotation] = "web" },
		"no roles annotation (its namespace's roles)": func(p *v1.Pod) {
			delete(p.Annotations, taskinfo.RolesAnnotation)
		},
		"another namespace (another role policy)": func(p *v1.Pod) { p.Namespace = "team-b" },
		"another toleration":                      func(p *v1.Pod) { p.Spec.Tolerations[0].Value = "batch" },
		"no toleration":                           func(p *v1.Pod) { p.Spec.Tolerations = nil },
	}
	seen := map[string]string{want: "the base pod"}
	for name, change := range differ {
		p := base()
		change(p)
		got, st := signature(t, pl, p)
		if st != nil {
			t.Errorf("%s: SignPod refused: %v", name, st)
			continue
		}
		if other, dup := seen[got]; dup {
			t.Errorf("%s: same signature as %s: %s", name, other, got)
		}
		seen[got] = name
	}
}

// What makes batching safe with offers: the scheduler re-runs Filter on
// a hinted node for the pod it hints, and the mirror by then holds the
// previous pod's claim. Two pods with one signature never share the last
// room of an agent.
func TestAHintedAgentIsFilteredAgainstTheOffersOfNow(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(1, 4096)))
	e.offer(t, mkOffer("a2", "n2", res(1, 4096)))
	pl := batching(true)
	a, b := mkPod("1", "64Mi"), mkPod("1", "64Mi")
	sigA, _ := signature(t, pl, a)
	sigB, _ := signature(t, pl, b)
	if sigA != sigB {
		t.Fatalf("pods of one demand sign differently: %s, %s", sigA, sigB)
	}
	sa, _, fits := e.schedule(t, a, "n1", "n2")
	if !fits["n1"].IsSuccess() || !fits["n2"].IsSuccess() {
		t.Fatalf("a fits %v, want n1 and n2", fits)
	}
	if st := e.pl.Reserve(context.Background(), sa, a, "n1"); !st.IsSuccess() {
		t.Fatalf("Reserve a on n1: %v", st)
	}
	// b's cycle: the cached list still names n1 and n2 as a found them.
	_, _, fits = e.schedule(t, b, "n1", "n2")
	wantReasons(t, fits["n1"], fwk.Unschedulable, "mesos: not enough cpus offered (1 requested)")
	if !fits["n2"].IsSuccess() {
		t.Errorf("n2 for b: %v, want fit", fits["n2"])
	}
}
