package deps

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

type entry struct{ path, pkg string }

func readList(t *testing.T) []entry {
	t.Helper()
	f, err := os.Open("deps.list")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []entry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) < 3 {
			t.Fatalf("deps.list line %q: want path, package and why", sc.Text())
		}
		out = append(out, entry{fields[0], fields[1]})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) == 0 {
		t.Fatal("deps.list lists nothing")
	}
	return out
}

// fakeRoot makes a directory holding every listed path but skip.
func fakeRoot(t *testing.T, list []entry, skip string) string {
	root := t.TempDir()
	for _, e := range list {
		if e.path == skip {
			continue
		}
		p := filepath.Join(root, e.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func verify(t *testing.T, root string) (string, error) {
	cmd := exec.Command("bash", "../verify-deps.sh")
	cmd.Env = append(os.Environ(), "DEPS_ROOT="+root)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestVerifyPassesWhenEverythingIsThere(t *testing.T) {
	list := readList(t)
	if out, err := verify(t, fakeRoot(t, list, "")); err != nil {
		t.Fatalf("verify-deps failed on a root holding every listed path: %v\n%s", err, out)
	}
}

// The check a fresh machine needs: any one path gone (a package removed by
// hand, or one that install-deps never installed) fails and names its package.
func TestVerifyNamesThePackageOfEachMissingPath(t *testing.T) {
	list := readList(t)
	for _, e := range list {
		out, err := verify(t, fakeRoot(t, list, e.path))
		if err == nil {
			t.Errorf("%s missing: verify-deps passed\n%s", e.path, out)
			continue
		}
		if !strings.Contains(out, e.path) || !strings.Contains(out, "apt-get install "+e.pkg) {
			t.Errorf("%s missing: the message does not name the path and package %s:\n%s", e.path, e.pkg, out)
		}
	}
}

// The protobuf well-known types are what a fresh machine lacked: protoc alone
// (protobuf-compiler with --no-install-recommends) does not bring them.
func TestListHasWhatCodeGenerationImports(t *testing.T) {
	list := readList(t)
	protos, err := filepath.Glob("../../proto/*/*/*.proto")
	if err != nil || len(protos) == 0 {
		t.Fatalf("no .proto files found under proto/: %v", err)
	}
	listed := map[string]bool{}
	for _, e := range list {
		listed[e.path] = true
	}
	for _, p := range protos {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if !strings.HasPrefix(line, `import "google/protobuf/`) {
				continue
			}
			wkt := "/usr/include/" + strings.Trim(strings.TrimSuffix(strings.TrimPrefix(line, "import "), ";"), `"`)
			if !listed[wkt] {
				t.Errorf("%s imports %s, which deps.list does not name (package libprotobuf-dev)", p, wkt)
			}
		}
	}
}
