package wire

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// checkRequired reports the first proto2 "required" field missing from a JSON
// document. The generated types drop presence for non-nullable fields, so a
// round trip through the binary codec cannot see that "user" was never sent;
// the struct tags still say which fields are required, and the JSON says
// which were present.
func checkRequired(t reflect.Type, doc any, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		arr, ok := doc.([]any)
		if !ok || t.Elem().Kind() == reflect.Uint8 {
			return nil
		}
		for i, el := range arr {
			if err := checkRequired(t.Elem(), el, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Struct:
	default:
		return nil
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("protobuf")
		if tag == "" {
			continue
		}
		name := ""
		required := false
		for _, part := range strings.Split(tag, ",") {
			if part == "req" {
				required = true
			}
			if strings.HasPrefix(part, "name=") {
				name = strings.TrimPrefix(part, "name=")
			}
		}
		if jt := strings.Split(f.Tag.Get("json"), ",")[0]; jt != "" && jt != "-" {
			name = jt
		}
		v, present := obj[name]
		if present && v == nil {
			present = false
		}
		if required && !present {
			return fmt.Errorf("missing required field %s", strings.TrimPrefix(path+"."+name, "."))
		}
		if present {
			if err := checkRequired(f.Type, v, path+"."+name); err != nil {
				return err
			}
		}
	}
	return nil
}

func requiredFromJSON(body []byte, m Message) error {
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return err
	}
	return checkRequired(reflect.TypeOf(m), doc, "")
}
