package mapkey

import "testing"

func TestOf(t *testing.T) {
	a := map[string]string{"rack": "r1", "zone": "z"}
	b := map[string]string{"zone": "z", "rack": "r1"}
	if Of(a) != Of(b) {
		t.Errorf("equal maps, different keys %q and %q", Of(a), Of(b))
	}
	for _, other := range []map[string]string{
		{"rack": "r1"},
		{"rack": "r1", "zone": "y"},
		{"rack": "r1z", "one": "z"},
		{"rackr1": "", "zone": "z"},
	} {
		if Of(a) == Of(other) {
			t.Errorf("%v and %v share the key %q", a, other, Of(a))
		}
	}
	if Of(nil) != "" || Of(map[string]string{}) != "" {
		t.Error("an empty map's key is not empty")
	}
}
