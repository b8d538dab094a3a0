package mesosoffers

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

const teamPolicy = `apiVersion: k8sm.io/v1alpha1
kind: RolePolicy
roles:
- role: analytics
  namespaces: [team-a]
`

// roleOffer offers r to one role only, as Mesos offers a multi-role
// framework each resource under the role it is allocated to.
func roleOffer(agentID, host, role string, r podresources.Resources) mesos.Offer {
	o := mkOffer(agentID, host, r)
	o.Resources = podresources.ToMesos(r, role)
	for i := range o.Resources {
		o.Resources[i].AllocationInfo = &mesos.Resource_AllocationInfo{Role: &role}
	}
	return o
}

func podIn(ns string, roles string) *v1.Pod {
	p := mkPod("1", "1Gi")
	p.Namespace = ns
	if roles != "" {
		p.Annotations = map[string]string{taskinfo.RolesAnnotation: roles}
	}
	return p
}

// TestRolePolicyAttack: a tenant's pod takes resources Mesos holds for
// another team's role. Before the role policy, a pod without k8sm.io/roles
// drew from every role the framework held, and one naming another team's
// role got it; now the plugin places a pod only on the roles the policy
// lets its namespace use, and says which policy refused it.
func TestRolePolicyAttack(t *testing.T) {
	policy := filepath.Join(t.TempDir(), "role-policy.yaml")
	if err := os.WriteFile(policy, []byte(teamPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBroker(t, "127.0.0.1:0")
	pl, h := newPlugin(t, b.addr, fmt.Sprintf(`,"rolePolicyFile":%q`, policy))
	e := &env{broker: b, handle: h, pl: pl}
	e.waitFor(t, "the offer view to sync", func() bool { ok, _ := pl.mirror.state(); return ok })
	e.offer(t, roleOffer("a-reserved", "reserved", "analytics", res(4, 8192)))
	e.offer(t, roleOffer("a-shared", "shared", "*", res(4, 8192)))

	// No annotation: only the roles of its namespace.
	_, st, nodes := e.schedule(t, podIn("team-b", ""), "reserved", "shared")
	if st != nil {
		t.Fatalf("PreFilter: %v", st)
	}
	wantReasons(t, nodes["reserved"], fwk.Unschedulable, "mesos: no resources offered for the roles the pod may use (*)")
	if !nodes["shared"].IsSuccess() {
		t.Errorf("shared: %v, want fit", nodes["shared"])
	}

	// Naming another team's role: refused before any node is tried.
	_, st, _ = e.schedule(t, podIn("team-b", "analytics"), "reserved")
	want := fmt.Sprintf(`mesos: denied by the role policy: role policy %s does not let namespace "team-b" use Mesos role analytics (it may use: *)`, policy)
	if st.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(st.Message(), want) {
		t.Errorf("PreFilter = %v %q, want unresolvable %q", st.Code(), st.Message(), want)
	}

	// The team that owns the role gets it, with or without the annotation.
	for _, roles := range []string{"analytics", ""} {
		_, st, nodes = e.schedule(t, podIn("team-a", roles), "reserved")
		if st != nil || !nodes["reserved"].IsSuccess() {
			t.Errorf("team-a (roles %q): PreFilter %v, reserved %v; want fit", roles, st, nodes["reserved"])
		}
	}
}

// TestDefaultRolePolicy: without a policy file only the default role "*" is
// usable, by every namespace.
func TestDefaultRolePolicy(t *testing.T) {
	e := newEnv(t)
	e.offer(t, roleOffer("a-reserved", "reserved", "analytics", res(4, 8192)))
	e.offer(t, roleOffer("a-shared", "shared", "*", res(4, 8192)))
	_, st, nodes := e.schedule(t, podIn("default", ""), "reserved", "shared")
	if st != nil || nodes["reserved"].IsSuccess() || !nodes["shared"].IsSuccess() {
		t.Errorf("a pod without roles fits role analytics without any policy granting it: PreFilter %v, reserved %v", st, nodes["reserved"])
	}
	_, st, _ = e.schedule(t, podIn("default", "analytics"), "reserved")
	if st.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(st.Message(), "the built-in role policy") {
		t.Errorf("PreFilter = %v %q, want the built-in policy's refusal", st.Code(), st.Message())
	}
}

// TestBadAnnotationsAreUnschedulable: a pod whose k8sm.io/ annotations are
// wrong stays pending with the reason, whatever the nodes.
func TestBadAnnotationsAreUnschedulable(t *testing.T) {
	e := newEnv(t)
	e.offer(t, mkOffer("a1", "n1", res(4, 8192)))
	p := mkPod("1", "1Gi")
	p.Annotations = map[string]string{"k8sm.io/role": "analytics"}
	_, st, _ := e.schedule(t, p, "n1")
	if st.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(st.Message(), "annotation k8sm.io/role: k8sm reads no such annotation") {
		t.Errorf("PreFilter = %v %q", st.Code(), st.Message())
	}
}

func TestRolePolicyFileArg(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\nroles:\n- role: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := argsFrom(nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &Args{RolePolicyFile: bad}
	_, err = argsFrom(a)
	if err == nil || !strings.Contains(err.Error(), "pluginConfig[MesosOffers].args.rolePolicyFile") || !strings.Contains(err.Error(), "needs at least one namespace") {
		t.Errorf("args with a bad policy: %v", err)
	}
}
