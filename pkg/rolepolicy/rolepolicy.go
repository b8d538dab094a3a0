// Package rolepolicy says which namespaces' pods may draw from which Mesos
// roles. Mesos roles carry quota and reservations that operators give to
// teams; without a policy any tenant who can create a pod could take another
// team's reserved resources. The scheduler plugin applies the policy when it
// filters (so pods are placed only where their namespace may take resources)
// and the broker applies it again to every Reserve and Launch.
//
// The policy is default-deny for every role but the default role, which every
// namespace may use unless a rule names it:
//
//	apiVersion: k8sm.io/v1alpha1
//	kind: RolePolicy
//	defaultRole: "*"            # the role every namespace may use (default "*")
//	roles:
//	- role: analytics           # only these namespaces may use "analytics"
//	  namespaces: [team-a, team-b]
//	- role: "*"                 # naming the default role restricts it too
//	  namespaces: ["*"]         # "*": every namespace
//
// A pod without the k8sm.io/roles annotation may use every role its
// namespace may; the annotation narrows that, and naming a role the namespace
// may not use is refused.
package rolepolicy

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/k8sm/k8sm/pkg/filereload"
	"github.com/k8sm/k8sm/pkg/podresources"
)

// APIVersion and Kind name the file format.
const (
	APIVersion = "k8sm.io/v1alpha1"
	Kind       = "RolePolicy"
	// AllNamespaces in a rule's namespaces means every namespace.
	AllNamespaces = "*"
)

// ErrDenied is wrapped by every refusal of the policy.
var ErrDenied = errors.New("denied by the role policy")

// File is the policy as written (a ConfigMap's key or a file).
type File struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// DefaultRole is the role every namespace may use unless a rule names
	// it; default "*" (Mesos's unreserved resources).
	DefaultRole *string `json:"defaultRole,omitempty"`
	Roles       []Rule  `json:"roles,omitempty"`
}

// Rule lets the listed namespaces use one role.
type Rule struct {
	Role       string   `json:"role"`
	Namespaces []string `json:"namespaces"`
}

// Policy is a checked policy. Its source names it in every refusal, so that
// a person reading a pod's event knows which file to change.
type Policy struct {
	source      string
	defaultRole string
	// rules: role → namespaces (AllNamespaces for every namespace).
	rules map[string][]string
}

// Default is the policy in force without a file: the default role "*" for
// every namespace, no other role for anyone.
func Default() *Policy {
	return &Policy{source: `the built-in role policy (role "*" for every namespace, no other role)`, defaultRole: podresources.DefaultRole, rules: map[string][]string{}}
}

// Parse reads a policy; unknown fields, bad role and namespace names,
// duplicate rules are errors naming the field.
func Parse(data []byte, source string) (*Policy, error) {
	var f File
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("role policy %s: %w", source, err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if f.APIVersion != APIVersion || f.Kind != Kind {
		bad("apiVersion/kind is %q/%q, want %s/%s", f.APIVersion, f.Kind, APIVersion, Kind)
	}
	p := &Policy{source: "role policy " + source, defaultRole: podresources.DefaultRole, rules: map[string][]string{}}
	if f.DefaultRole != nil {
		p.defaultRole = *f.DefaultRole
		if err := podresources.ValidateRole(p.defaultRole); err != nil {
			bad("defaultRole: %v", err)
		}
	}
	for i, r := range f.Roles {
		if err := podresources.ValidateRole(r.Role); err != nil {
			bad("roles[%d].role: %v", i, err)
			continue
		}
		if _, dup := p.rules[r.Role]; dup {
			bad("roles[%d]: role %q has a rule already; list all its namespaces in one", i, r.Role)
			continue
		}
		if len(r.Namespaces) == 0 {
			bad("roles[%d].namespaces: role %q needs at least one namespace (%q for every one)", i, r.Role, AllNamespaces)
		}
		for j, ns := range r.Namespaces {
			if ns == AllNamespaces {
				continue
			}
			if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
				bad("roles[%d].namespaces[%d]: %q is not a namespace name: %s", i, j, ns, strings.Join(msgs, "; "))
			}
		}
		p.rules[r.Role] = slices.Clone(r.Namespaces)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("role policy %s: %w", source, errors.Join(errs...))
	}
	return p, nil
}

// Load reads the policy in path.
func Load(path string) (*Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the role policy: %w", err)
	}
	return Parse(b, path)
}

// Source is the policy in force: a file read again when it changes (a
// ConfigMap update), or the built-in default.
type Source interface {
	Current() *Policy
}

type fixed struct{ p *Policy }

func (f fixed) Current() *Policy { return f.p }

// Static serves one policy for ever.
func Static(p *Policy) Source { return fixed{p} }

type file struct{ v *filereload.Value[*Policy] }

// Current never fails after the first read: a bad edit keeps the last good
// policy in force (and is logged), as a bad certificate rotation does.
func (f file) Current() *Policy {
	p, _ := f.v.Get()
	return p
}

// NewSource serves the policy of path, read again when it changes, or the
// built-in default when path is empty. A path that cannot be read or parsed
// fails here, at start-up.
func NewSource(path string) (Source, error) {
	if path == "" {
		return Static(Default()), nil
	}
	v, err := filereload.New("role policy "+path, []string{path}, func() (*Policy, error) { return Load(path) })
	if err != nil {
		return nil, err
	}
	return file{v}, nil
}

// String names the policy (its file).
func (p *Policy) String() string { return p.source }

// DefaultRole is the role every namespace may use unless a rule names it.
func (p *Policy) DefaultRole() string { return p.defaultRole }

// Allows reports whether namespace may use role.
func (p *Policy) Allows(namespace, role string) bool {
	nss, ruled := p.rules[role]
	if !ruled {
		return role == p.defaultRole
	}
	return slices.Contains(nss, namespace) || slices.Contains(nss, AllNamespaces)
}

// Grants reports whether any namespace may use role.
func (p *Policy) Grants(role string) bool {
	nss, ruled := p.rules[role]
	return len(nss) > 0 || (!ruled && role == p.defaultRole)
}

// Roles lists, sorted, the roles namespace may use.
func (p *Policy) Roles(namespace string) []string {
	var out []string
	if p.Allows(namespace, p.defaultRole) {
		out = append(out, p.defaultRole)
	}
	for role := range p.rules {
		if role != p.defaultRole && p.Allows(namespace, role) {
			out = append(out, role)
		}
	}
	sort.Strings(out)
	return out
}

// Resolve is the roles a pod of namespace may draw from when it asks for
// requested (its k8sm.io/roles; none: every role the namespace may use). A
// requested role the namespace may not use, or a namespace that may use no
// role, is an error wrapping ErrDenied that names the policy.
func (p *Policy) Resolve(namespace string, requested []string) ([]string, error) {
	allowed := p.Roles(namespace)
	if len(requested) == 0 {
		if len(allowed) == 0 {
			return nil, fmt.Errorf("%w: %s lets namespace %q use no Mesos role; ask the cluster's operator for one", ErrDenied, p.source, namespace)
		}
		return allowed, nil
	}
	var denied []string
	for _, r := range requested {
		if !p.Allows(namespace, r) {
			denied = append(denied, r)
		}
	}
	if len(denied) > 0 {
		may := "none"
		if len(allowed) > 0 {
			may = strings.Join(allowed, ",")
		}
		return nil, fmt.Errorf("%w: %s does not let namespace %q use Mesos role %s (it may use: %s)", ErrDenied, p.source, namespace, strings.Join(denied, ","), may)
	}
	out := slices.Clone(requested)
	sort.Strings(out)
	return slices.Compact(out), nil
}

// Check is Resolve for one role already chosen (a reservation's).
func (p *Policy) Check(namespace, role string) error {
	_, err := p.Resolve(namespace, []string{role})
	return err
}
