package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMemoryLimit: --memory-limit wins (0 turns the limit off), then
// GOMEMLIMIT, then 90% of the cgroup's limit, v1 or v2; no limit anywhere
// leaves the runtime's default; a bad flag says what it wants.
func TestMemoryLimit(t *testing.T) {
	write := func(t *testing.T, path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v1 := t.TempDir()
	write(t, filepath.Join(v1, "proc"), "9:name=systemd:/\n4:memory:/pod1/broker\n2:cpu,cpuacct:/pod1/broker\n")
	write(t, filepath.Join(v1, "memory/pod1/broker/memory.limit_in_bytes"), "209715200\n")
	v1none := t.TempDir()
	write(t, filepath.Join(v1none, "proc"), "4:memory:/\n")
	write(t, filepath.Join(v1none, "memory/memory.limit_in_bytes"), "9223372036854771712\n")
	v2 := t.TempDir()
	write(t, filepath.Join(v2, "proc"), "0::/kubepods/pod1\n")
	write(t, filepath.Join(v2, "kubepods/pod1/memory.max"), "104857600\n")
	v2max := t.TempDir()
	write(t, filepath.Join(v2max, "proc"), "0::/\n")
	write(t, filepath.Join(v2max, "memory.max"), "max\n")

	for _, tc := range []struct {
		name, flag, env, root string
		want                  int64
		source, err           string
	}{
		{name: "flag", flag: "180Mi", root: v1, want: 180 << 20, source: "--memory-limit"},
		{name: "flag off", flag: "0", root: v1, want: 0, source: "--memory-limit"},
		{name: "GOMEMLIMIT", env: "100MiB", root: v1, source: "GOMEMLIMIT"},
		{name: "cgroup v1", root: v1, want: 209715200 * 9 / 10, source: "cgroup memory limit"},
		{name: "cgroup v1 unlimited", root: v1none},
		{name: "cgroup v2", root: v2, want: 104857600 * 9 / 10, source: "cgroup memory limit"},
		{name: "cgroup v2 max", root: v2max},
		{name: "no cgroup file", root: t.TempDir()},
		{name: "bad flag", flag: "lots", root: v1, err: `--memory-limit="lots" must be a quantity of bytes`},
		{name: "negative flag", flag: "-1Mi", root: v1, err: "must be a quantity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOMEMLIMIT", tc.env)
			got, source, err := memoryLimit(tc.flag, tc.root, filepath.Join(tc.root, "proc"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want || source != tc.source {
				t.Errorf("limit %d from %q, want %d from %q", got, source, tc.want, tc.source)
			}
		})
	}
}
