package kubelet

import "testing"

func TestFreezerCgroup(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"9:name=systemd:/\n6:freezer:/mesos/5c1d\n4:memory:/mesos/5c1d\n0::/\n", "/mesos/5c1d"},
		{"6:freezer,devices:/k8sm-1/agent-1/abc\n", "/k8sm-1/agent-1/abc"},
		{"6:freezer:/\n4:memory:/process_api/1\n", ""},
		{"0::/user.slice/session-1.scope\n", ""},
		{"6:freezer:/a/../b\n", ""},
	} {
		if got := freezerCgroup(tc.in); got != tc.want {
			t.Errorf("freezerCgroup(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLeftBehind(t *testing.T) {
	own := "/k8sm-1/agent-1/c-new"
	parents := []string{
		"/k8sm-1/agent-1/c-old/kubelet/kubepods/besteffort/pod1", // destroyed container
		"/k8sm-1/agent-1/c-new/kubelet/kubepods/besteffort/pod2", // this executor's (adopted)
		"/k8sm-1/agent-1/c-live/kubelet/kubepods/pod3",           // a container that still exists
		"/k8sm/agent-1/kubepods/pod4",                            // not under the agent's containers
		"/k8sm-1/agent-1",                                        // the root itself
	}
	got := LeftBehind(own, parents, func(c string) bool { return c == "/k8sm-1/agent-1/c-live" || c == own })
	want := []bool{true, false, false, false, false}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s: left behind %v, want %v", parents[i], got[i], want[i])
		}
	}
	if got := LeftBehind("", parents, func(string) bool { return false }); got[0] {
		t.Errorf("outside a container nothing is left behind by an earlier one")
	}
}
