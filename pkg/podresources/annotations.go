package podresources

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// ValidateRole checks a Mesos role name as the Mesos master does (roles.md):
// "*", or one or more path components separated by "/", none of them empty,
// ".", "..", "*" or starting with "-", and no whitespace or backslash.
func ValidateRole(role string) error {
	if role == DefaultRole {
		return nil
	}
	if role == "" {
		return errors.New("a role name must not be empty")
	}
	if strings.HasPrefix(role, "/") || strings.HasSuffix(role, "/") {
		return fmt.Errorf("role %q must not start or end with /", role)
	}
	for _, c := range strings.Split(role, "/") {
		switch {
		case c == "":
			return fmt.Errorf("role %q has an empty path component (//)", role)
		case c == "." || c == ".." || c == "*":
			return fmt.Errorf("role %q has the path component %q, which Mesos reserves", role, c)
		case strings.HasPrefix(c, "-"):
			return fmt.Errorf("role %q has a path component starting with -", role)
		case strings.ContainsAny(c, " \t\n\v\f\r\\"):
			return fmt.Errorf("role %q contains whitespace or a backslash", role)
		}
	}
	return nil
}

// ValidateAnnotations checks every k8sm.io/ annotation a pod's author can
// write, so that a mistake stops the pod with an error saying what to fix
// rather than being ignored (a misspelt k8sm.io/role would otherwise leave
// the pod on roles its author meant to exclude).
func ValidateAnnotations(pod *v1.Pod) error {
	var errs []error
	for key, val := range pod.Annotations {
		prefix, _, ok := strings.Cut(key, "/")
		if !ok || prefix != taskinfo.AnnotationPrefix {
			continue
		}
		var err error
		switch key {
		case taskinfo.RolesAnnotation:
			_, err = parseRoles(val)
		case taskinfo.WildcardPortsAnnotation:
			if val != "true" && val != "false" {
				err = fmt.Errorf("%q is neither \"true\" nor \"false\"", val)
			}
		case taskinfo.HostPortsAnnotation:
			err = validateHostPorts(pod, val)
		case taskinfo.TaskIDAnnotation:
			// The scheduler writes it with the Binding; on a pod not yet
			// bound it can only be its author's.
			if pod.Spec.NodeName == "" {
				err = errors.New("k8sm writes it when it binds the pod; remove it")
			}
		default:
			err = fmt.Errorf("k8sm reads no such annotation on pods (it reads %s): remove it or correct its name", strings.Join(taskinfo.PodAnnotations, ", "))
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("annotation %s: %w", key, err))
		}
	}
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// parseRoles reads the roles annotation: Mesos roles separated by commas.
func parseRoles(v string) ([]string, error) {
	var roles []string
	for _, r := range strings.Split(v, ",") {
		r = strings.TrimSpace(r)
		if err := ValidateRole(r); err != nil {
			return nil, fmt.Errorf("%w; list Mesos roles separated by commas, e.g. %q", err, "analytics,*")
		}
		roles = append(roles, r)
	}
	return roles, nil
}

// validateHostPorts checks the recorded host ports. The scheduler writes them
// when it places a pod with wildcard ports; on a pod not yet placed they can
// only be its author's, who has no say in which host ports Mesos allocates.
func validateHostPorts(pod *v1.Pod, v string) error {
	if pod.Spec.NodeName == "" {
		return fmt.Errorf("k8sm writes it when it places a pod with wildcard ports (%s: \"true\"); remove it", taskinfo.WildcardPortsAnnotation)
	}
	var as []PortAssignment
	if err := json.Unmarshal([]byte(v), &as); err != nil {
		return fmt.Errorf("not a JSON list of port assignments: %w", err)
	}
	for _, a := range as {
		if a.HostPort <= 0 || a.HostPort > 65535 {
			return fmt.Errorf("host port %d of %s:%d is outside 1-65535", a.HostPort, a.Container, a.ContainerPort)
		}
	}
	return nil
}
