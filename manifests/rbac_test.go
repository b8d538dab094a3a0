package manifests

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// grant is one permission: verb on group/resource (a subresource spelt
// "pods/status") in namespace ("" for cluster-wide), limited to name when
// set.
type grant struct {
	namespace, group, resource, verb, name string
}

func (g grant) String() string {
	where := "cluster-wide"
	if g.namespace != "" {
		where = "in " + g.namespace
	}
	s := fmt.Sprintf("%s %s/%s %s", g.verb, g.group, g.resource, where)
	if g.name != "" {
		s += " name " + g.name
	}
	return s
}

// used is the reviewed list of every request a component makes, with where
// in the code it comes from. A manifest granting anything else fails
// TestRBACGrantsOnlyWhatTheCodeUses: widen this list only with the code
// that needs it.
type used struct {
	grant
	why string
}

func uses(ns, group, resource, why string, verbs ...string) []used {
	var out []used
	for _, v := range verbs {
		out = append(out, used{grant{namespace: ns, group: group, resource: resource, verb: v}, why})
	}
	return out
}

var brokerUses = slices.Concat(
	uses("", "", "pods", "broker/pods: informer of mesos-scheduler pods, Get before a status write, Delete of a pod on a kubelet-less node", "get", "list", "watch", "delete"),
	uses("", "", "pods", "broker/pods: JSON patch removing the k8sm.io/task finalizer (manifests/task-finalizer.yaml limits the broker's pod writes to that)", "patch"),
	uses("", "", "pods/status", "broker/pods: UpdateStatus of a pod whose task ended", "update"),
	uses("", "", "nodes", "broker/nodes: Node informer, Get, Create of an agent's Node, merge patch of its labels/annotation/taint, Delete of a gone agent's Node", "get", "list", "watch", "create", "patch", "delete"),
	uses("", "", "nodes/status", "broker/nodes: strategic merge patch of the status (Ready, capacity) while no kubelet runs", "patch"),
	uses("", "", "events", "broker/nodes, broker/hostprivate: client-go's event recorder (create, then patch to aggregate)", "create", "patch"),
	uses("", "", "services", "broker/hostprivate: Service informer (host-private Services)", "list", "watch"),
	uses("", "discovery.k8s.io", "endpointslices", "broker/hostprivate: informer on its own slices, create/update/delete of host-private Services' slices", "list", "watch", "create", "update", "delete"),
	uses("kube-node-lease", "coordination.k8s.io", "leases", "broker/nodes: Node Leases renewed for kubelet-less agents", "get", "create", "update"),
)

// The scheduler's own rules beside the stock roles it is bound to.
var schedulerUses = slices.Concat(
	uses("", "", "pods", "plugin/mesosoffers: records wildcard host ports on the pod (annotation k8sm.io/host-ports)", "patch"),
	uses("kube-system", "coordination.k8s.io", "leases", "kube-scheduler leader election creates its Lease (create cannot be limited by name)", "create"),
	[]used{
		{grant{"kube-system", "coordination.k8s.io", "leases", "get", "k8sm-scheduler"}, "leader election reads its Lease"},
		{grant{"kube-system", "coordination.k8s.io", "leases", "update", "k8sm-scheduler"}, "leader election renews its Lease"},
	},
)

// What the executors read with their nodes' credentials beyond what the
// Node authorizer allows.
var nodeUses = slices.Concat(
	uses("", "", "nodes", "executor/podnet: Node informer for the routes to other nodes' pod CIDRs; kube-proxy's Node informer", "get", "list", "watch"),
	uses("", "discovery.k8s.io", "endpointslices", "executor/proxy: kube-proxy's EndpointSlice informer", "list", "watch"),
	uses("", "networking.k8s.io", "servicecidrs", "executor/proxy: kube-proxy's ServiceCIDR informer (MultiCIDRServiceAllocator)", "list", "watch"),
)

// What the cluster DNS reads: CoreDNS's kubernetes plugin with "pods
// insecure" (no pod watch).
var corednsUses = slices.Concat(
	uses("", "", "services", "coredns kubernetes plugin: Service informer", "list", "watch"),
	uses("", "", "namespaces", "coredns kubernetes plugin: Namespace informer", "list", "watch"),
	uses("", "discovery.k8s.io", "endpointslices", "coredns kubernetes plugin: EndpointSlice informer (headless records)", "list", "watch"),
)

// Upstream roles a manifest may bind, and why.
var upstreamRoles = map[string]string{
	"ClusterRole/system:kube-scheduler":              "k8sm's scheduler is a stock kube-scheduler",
	"ClusterRole/system:volume-scheduler":            "the stock scheduler's volume binding",
	"Role/extension-apiserver-authentication-reader": "the scheduler's delegated authentication of /metrics and /healthz",
}

// rbacDocs reads the RBAC objects of a manifest.
func rbacDocs(t *testing.T, name string) (roles map[string][]rbacv1.PolicyRule, bindings []rbacv1.RoleBinding) {
	t.Helper()
	raw, err := FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	roles = map[string][]rbacv1.PolicyRule{}
	for _, doc := range strings.Split(string(raw), "\n---\n") {
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("manifests/%s: %v", name, err)
		}
		switch meta.Kind {
		case "ClusterRole", "Role":
			var r rbacv1.Role // the same fields as a ClusterRole without aggregation
			if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				t.Fatalf("manifests/%s %s: %v", name, meta.Kind, err)
			}
			roles[roleKey(meta.Kind, r.Namespace, r.Name)] = r.Rules
		case "ClusterRoleBinding", "RoleBinding":
			var b rbacv1.RoleBinding
			if err := yaml.UnmarshalStrict([]byte(doc), &b); err != nil {
				t.Fatalf("manifests/%s %s: %v", name, meta.Kind, err)
			}
			if meta.Kind == "ClusterRoleBinding" {
				b.Namespace = ""
			}
			bindings = append(bindings, b)
		}
	}
	return roles, bindings
}

func roleKey(kind, ns, name string) string { return kind + "/" + ns + "/" + name }

// granted expands every rule bound to subject into single grants.
func granted(t *testing.T, name string, subject func(rbacv1.Subject) bool) []grant {
	t.Helper()
	roles, bindings := rbacDocs(t, name)
	var out []grant
	for _, b := range bindings {
		if !slices.ContainsFunc(b.Subjects, subject) {
			continue
		}
		ref := b.RoleRef
		// A ClusterRoleBinding grants cluster-wide; a RoleBinding, of a
		// Role or a ClusterRole, in its namespace only.
		ns := b.Namespace
		key := roleKey(ref.Kind, "", ref.Name)
		if ref.Kind == "Role" {
			key = roleKey(ref.Kind, b.Namespace, ref.Name)
		}
		rules, ok := roles[key]
		if !ok {
			if _, upstream := upstreamRoles[ref.Kind+"/"+ref.Name]; !upstream {
				t.Errorf("manifests/%s binds %s %s, which it does not define and which is no reviewed upstream role", name, ref.Kind, ref.Name)
			}
			continue
		}
		for _, r := range rules {
			if len(r.NonResourceURLs) > 0 {
				t.Errorf("manifests/%s role %s grants non-resource URLs %v", name, ref.Name, r.NonResourceURLs)
			}
			names := r.ResourceNames
			if len(names) == 0 {
				names = []string{""}
			}
			for _, g := range r.APIGroups {
				for _, res := range r.Resources {
					for _, v := range r.Verbs {
						for _, n := range names {
							out = append(out, grant{namespace: ns, group: g, resource: res, verb: v, name: n})
						}
					}
				}
			}
		}
	}
	return out
}

// compare lists every grant of got that want does not name, and every use
// of want that got does not grant.
func compare(manifest string, got []grant, want []used) []string {
	var problems []string
	allowed := map[grant]bool{}
	for _, u := range want {
		allowed[u.grant] = true
	}
	var extra []string
	for _, g := range got {
		if !allowed[g] {
			extra = append(extra, g.String())
		}
	}
	sort.Strings(extra)
	for _, e := range slices.Compact(extra) {
		problems = append(problems, fmt.Sprintf("manifests/%s grants %s, which the code does not use (the reviewed list in manifests/rbac_test.go): remove it, or add it there with the code that needs it", manifest, e))
	}
	have := map[grant]bool{}
	for _, g := range got {
		have[g] = true
	}
	for _, u := range want {
		if !have[u.grant] {
			problems = append(problems, fmt.Sprintf("manifests/%s does not grant %s, which the code needs (%s)", manifest, u.grant, u.why))
		}
	}
	return problems
}

// TestRBACGrantsOnlyWhatTheCodeUses: every permission the broker's, the
// scheduler's, the nodes' and the cluster DNS's manifests grant is one the code uses (and the reverse), with
// no wildcard, and Leases only where they belong: the broker's in
// kube-node-lease, never the control plane's leader-election Leases.
func TestRBACGrantsOnlyWhatTheCodeUses(t *testing.T) {
	broker := func(s rbacv1.Subject) bool {
		return (s.Kind == "User" && s.Name == "system:k8sm-broker") || (s.Kind == "ServiceAccount" && s.Namespace == "kube-system" && s.Name == "k8sm-broker")
	}
	for _, p := range compare("broker-rbac.yaml", granted(t, "broker-rbac.yaml", broker), brokerUses) {
		t.Error(p)
	}
	scheduler := func(s rbacv1.Subject) bool {
		return s.Kind == "ServiceAccount" && s.Namespace == "kube-system" && s.Name == "k8sm-scheduler"
	}
	for _, p := range compare("rbac.yaml", granted(t, "rbac.yaml", scheduler), schedulerUses) {
		t.Error(p)
	}

	nodes := func(s rbacv1.Subject) bool { return s.Kind == "Group" && s.Name == "system:nodes" }
	for _, p := range compare("node-rbac.yaml", granted(t, "node-rbac.yaml", nodes), nodeUses) {
		t.Error(p)
	}

	coredns := func(s rbacv1.Subject) bool {
		return s.Kind == "ServiceAccount" && s.Namespace == "kube-system" && s.Name == "coredns"
	}
	for _, p := range compare("coredns.yaml", granted(t, "coredns.yaml", coredns), corednsUses) {
		t.Error(p)
	}

	for _, m := range []string{"broker-rbac.yaml", "rbac.yaml", "node-rbac.yaml", "coredns.yaml"} {
		roles, _ := rbacDocs(t, m)
		for name, rules := range roles {
			for _, r := range rules {
				for _, list := range [][]string{r.APIGroups, r.Resources, r.Verbs} {
					if slices.Contains(list, "*") {
						t.Errorf("manifests/%s %s has a wildcard rule %+v", m, name, r)
					}
				}
			}
		}
	}
}

// TestRBACComparisonCatchesAnExtraGrant: the comparison fails for a
// manifest that grants one verb too many (so that the test above can fail).
func TestRBACComparisonCatchesAnExtraGrant(t *testing.T) {
	got := []grant{{resource: "pods", verb: "get"}, {resource: "pods", verb: "update"}, {namespace: "kube-system", group: "coordination.k8s.io", resource: "leases", verb: "update"}}
	problems := compare("x.yaml", got, slices.Concat(uses("", "", "pods", "test", "get"), uses("kube-node-lease", "coordination.k8s.io", "leases", "test", "update")))
	want := []string{"grants update /pods cluster-wide", "grants update coordination.k8s.io/leases in kube-system", "does not grant update coordination.k8s.io/leases in kube-node-lease"}
	if len(problems) != len(want) {
		t.Fatalf("problems %q, want %d", problems, len(want))
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) {
			t.Errorf("problem %q does not say %q", problems[i], w)
		}
	}
}
