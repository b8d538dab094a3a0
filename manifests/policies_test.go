package manifests

import (
	"io/fs"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	plugincel "k8s.io/apiserver/pkg/admission/plugin/cel"
	"k8s.io/apiserver/pkg/admission/plugin/policy/validating"
	"k8s.io/apiserver/pkg/cel/environment"
	"sigs.k8s.io/yaml"
)

// TestAdmissionPoliciesCompile: every CEL expression of the shipped
// ValidatingAdmissionPolicies (variables, match conditions, validations and
// their messages) compiles in the API server's own CEL environment of this
// release. A policy that does not compile fails closed (failurePolicy
// Fail): it would refuse every write it matches, and its manifest would
// only fail when applied to a running cluster.
func TestAdmissionPoliciesCompile(t *testing.T) {
	files, err := fs.Glob(FS, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var seen int
	for _, name := range files {
		raw, err := FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(raw), "\n---\n") {
			var meta struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(doc), &meta); err != nil || meta.Kind != "ValidatingAdmissionPolicy" {
				continue
			}
			var p admissionv1.ValidatingAdmissionPolicy
			if err := yaml.UnmarshalStrict([]byte(doc), &p); err != nil {
				t.Fatalf("manifests/%s: %v", name, err)
			}
			seen++
			compilePolicy(t, name, &p)
		}
	}
	if seen == 0 {
		t.Fatal("no ValidatingAdmissionPolicy in the manifests")
	}
}

func compilePolicy(t *testing.T, file string, p *admissionv1.ValidatingAdmissionPolicy) {
	t.Helper()
	c, err := plugincel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		t.Fatal(err)
	}
	opts := plugincel.OptionalVariableDeclarations{HasParams: p.Spec.ParamKind != nil, HasAuthorizer: true}
	where := "manifests/" + file + " " + p.Name
	check := func(what string, r plugincel.CompilationResult) {
		if r.Error != nil {
			t.Errorf("%s %s does not compile: %v", where, what, r.Error)
		}
	}
	for _, v := range p.Spec.Variables {
		check("variable "+v.Name, c.CompileAndStoreVariable(&validating.Variable{Name: v.Name, Expression: v.Expression}, opts, environment.StoredExpressions))
	}
	for _, m := range p.Spec.MatchConditions {
		check("match condition "+m.Name, c.CompileCELExpression(&validating.ValidationCondition{Expression: m.Expression}, opts, environment.StoredExpressions))
	}
	for i, v := range p.Spec.Validations {
		check("validation "+string(rune('0'+i)), c.CompileCELExpression(&validating.ValidationCondition{Expression: v.Expression}, opts, environment.StoredExpressions))
		if v.MessageExpression != "" {
			check("messageExpression "+string(rune('0'+i)), c.CompileCELExpression(&validating.MessageExpressionCondition{MessageExpression: v.MessageExpression}, opts, environment.StoredExpressions))
		}
	}
}
