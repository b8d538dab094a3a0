package mesossim

import (
	"fmt"
	"strconv"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// ParseResources reads the mesos-agent --resources text format:
// "cpus:4;mem:8192;disk:10240;ports:[31000-32000,33000-33100];gpus:1".
// A role in parentheses is a static reservation: "cpus(web):2".
func ParseResources(spec string) ([]mesos.Resource, error) {
	var out mesos.Resources
	for _, item := range splitItems(spec) {
		name, value, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("parsing resource %q: expecting name:value", item)
		}
		name = strings.TrimSpace(name)
		value = strings.TrimSpace(value)
		var role *string
		if i := strings.IndexByte(name, '('); i >= 0 && strings.HasSuffix(name, ")") {
			r := name[i+1 : len(name)-1]
			name = name[:i]
			if r != "*" && r != "" {
				role = &r
			}
		}
		r := mesos.Resource{Name: name, Role: role}
		switch {
		case strings.HasPrefix(value, "["):
			t := mesos.RANGES
			r.Type = &t
			var rs []mesos.Value_Range
			for _, part := range strings.Split(strings.Trim(value, "[]"), ",") {
				b, e, ok := strings.Cut(strings.TrimSpace(part), "-")
				if !ok {
					return nil, fmt.Errorf("parsing resource %q: bad range %q", item, part)
				}
				bi, err1 := strconv.ParseUint(b, 10, 64)
				ei, err2 := strconv.ParseUint(e, 10, 64)
				if err1 != nil || err2 != nil || ei < bi {
					return nil, fmt.Errorf("parsing resource %q: bad range %q", item, part)
				}
				rs = append(rs, mesos.Value_Range{Begin: bi, End: ei})
			}
			r.Ranges = &mesos.Value_Ranges{Range: rs}
		case strings.HasPrefix(value, "{"):
			t := mesos.SET
			r.Type = &t
			var items []string
			for _, s := range strings.Split(strings.Trim(value, "{}"), ",") {
				items = append(items, strings.TrimSpace(s))
			}
			r.Set = &mesos.Value_Set{Item: items}
		default:
			v, err := strconv.ParseFloat(value, 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("parsing resource %q: bad scalar %q", item, value)
			}
			t := mesos.SCALAR
			r.Type = &t
			r.Scalar = &mesos.Value_Scalar{Value: v}
		}
		out.Add1(r)
	}
	return out, nil
}

// ParseAttributes reads the mesos-agent --attributes format: "rack:r1;zone:a;level:3".
// Numbers become scalars, [a-b] ranges, anything else text.
func ParseAttributes(spec string) ([]mesos.Attribute, error) {
	var out []mesos.Attribute
	for _, item := range splitItems(spec) {
		name, value, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("parsing attribute %q: expecting name:value", item)
		}
		a := mesos.Attribute{Name: strings.TrimSpace(name)}
		value = strings.TrimSpace(value)
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			a.Type = mesos.SCALAR
			a.Scalar = &mesos.Value_Scalar{Value: v}
		} else if strings.HasPrefix(value, "[") {
			rs, err := ParseResources("x:" + value)
			if err != nil {
				return nil, fmt.Errorf("parsing attribute %q: %w", item, err)
			}
			a.Type = mesos.RANGES
			a.Ranges = rs[0].Ranges
		} else {
			a.Type = mesos.TEXT
			a.Text = &mesos.Value_Text{Value: value}
		}
		out = append(out, a)
	}
	return out, nil
}

func splitItems(spec string) []string {
	var out []string
	for _, s := range strings.Split(spec, ";") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
