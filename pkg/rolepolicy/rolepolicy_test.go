package rolepolicy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const teams = `apiVersion: k8sm.io/v1alpha1
kind: RolePolicy
roles:
- role: analytics
  namespaces: [team-a, team-b]
- role: batch
  namespaces: ["*"]
`

func TestResolve(t *testing.T) {
	p, err := Parse([]byte(teams), "/etc/k8sm/role-policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ns        string
		requested []string
		want      []string
		denied    string
	}{
		{"team-a", nil, []string{"*", "analytics", "batch"}, ""},
		{"team-c", nil, []string{"*", "batch"}, ""},
		{"team-c", []string{"analytics"}, nil, `role policy /etc/k8sm/role-policy.yaml does not let namespace "team-c" use Mesos role analytics (it may use: *,batch)`},
		{"team-b", []string{"analytics", "analytics"}, []string{"analytics"}, ""},
		{"team-c", []string{"gpu", "*"}, nil, "use Mesos role gpu "},
	} {
		got, err := p.Resolve(tc.ns, tc.requested)
		if tc.denied != "" {
			if !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), tc.denied) {
				t.Errorf("%s %v: error %v, want one saying %q", tc.ns, tc.requested, err, tc.denied)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s %v: got %v, %v; want %v", tc.ns, tc.requested, got, err, tc.want)
		}
	}
}

// TestDefaultDeny: without a file only the default role is usable, by every
// namespace; a rule naming the default role restricts it too, and then a
// namespace left out may use nothing.
func TestDefaultDeny(t *testing.T) {
	d := Default()
	if got, _ := d.Resolve("anyone", nil); !reflect.DeepEqual(got, []string{"*"}) {
		t.Errorf("default policy gives %v, want [*]", got)
	}
	if _, err := d.Resolve("anyone", []string{"gpu"}); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), "built-in role policy") {
		t.Errorf("default policy allowed role gpu: %v", err)
	}
	p, err := Parse([]byte("apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\ndefaultRole: k8s\nroles:\n- role: k8s\n  namespaces: [prod]\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := p.Resolve("prod", nil); !reflect.DeepEqual(got, []string{"k8s"}) {
		t.Errorf("prod gets %v, want [k8s]", got)
	}
	if _, err := p.Resolve("dev", nil); !errors.Is(err, ErrDenied) || !strings.Contains(err.Error(), `lets namespace "dev" use no Mesos role`) {
		t.Errorf("dev: %v", err)
	}
	if p.Allows("prod", "*") {
		t.Error(`"*" is not the default role of this policy, yet allowed`)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"apiVersion: v1\nkind: ConfigMap\n", "want k8sm.io/v1alpha1/RolePolicy"},
		{"apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\nrole: [x]\n", `unknown field "role"`},
		{"apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\nroles:\n- role: ../x\n  namespaces: [a]\n", "roles[0].role"},
		{"apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\nroles:\n- role: x\n  namespaces: [Team_A]\n", `roles[0].namespaces[0]: "Team_A" is not a namespace name`},
		{"apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\nroles:\n- role: x\n", "needs at least one namespace"},
		{"apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\nroles:\n- role: x\n  namespaces: [a]\n- role: x\n  namespaces: [b]\n", `roles[1]: role "x" has a rule already`},
		{"apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\ndefaultRole: ''\n", "defaultRole: a role name must not be empty"},
	} {
		_, err := Parse([]byte(tc.doc), "f.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "role policy f.yaml") {
			t.Errorf("%q: error %v, want one naming the file and saying %q", tc.doc, err, tc.want)
		}
	}
}

// TestSourceReloads: an edited ConfigMap takes effect without a restart; a
// bad edit keeps the last good policy.
func TestSourceReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(s string, age time.Duration) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-age)
		_ = os.Chtimes(path, mt, mt)
	}
	write(teams, time.Hour)
	src, err := NewSource(path)
	if err != nil {
		t.Fatal(err)
	}
	if !src.Current().Allows("team-a", "analytics") {
		t.Fatal("team-a may not use analytics")
	}
	write(strings.Replace(teams, "team-a, team-b", "team-b", 1), time.Minute)
	if src.Current().Allows("team-a", "analytics") {
		t.Error("the edit that took analytics from team-a did not take effect")
	}
	write("not: [a policy", 0)
	if p := src.Current(); p == nil || !p.Allows("team-b", "analytics") {
		t.Error("a bad edit did not keep the last good policy")
	}
	if _, err := NewSource(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("a missing policy file was accepted at start-up")
	}
}
