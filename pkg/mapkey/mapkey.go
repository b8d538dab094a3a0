// Package mapkey gives a string map a canonical form, so that caches can
// share one copy of maps with equal contents (an agent's attributes, a
// Node's labels) among thousands of agents.
package mapkey

import (
	"slices"
	"strings"
)

// Of is a canonical form of m: equal maps, and only equal maps, have equal
// keys. NUL separates the parts because neither Mesos attribute names nor
// Kubernetes label keys and values may contain it.
func Of(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(m[k])
		b.WriteByte(0)
	}
	return b.String()
}
