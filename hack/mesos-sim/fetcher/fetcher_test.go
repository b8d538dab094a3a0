package fetcher

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

func tgz(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write([]byte(body))
	}
	_ = tw.Close()
	_ = zw.Close()
	return buf.Bytes()
}

func zipped(t *testing.T, name, body string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write([]byte(body))
	_ = zw.Close()
	return buf.Bytes()
}

type server struct {
	*httptest.Server
	gets atomic.Int32
}

func serve(t *testing.T, files map[string][]byte) *server {
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.gets.Add(1)
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func ptr[T any](v T) *T { return &v }

func newFetcher(t *testing.T) *Fetcher {
	f, err := New(filepath.Join(t.TempDir(), "cache"), "")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func readMode(t *testing.T, p string) (string, os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("the sandbox has no %s: %v", filepath.Base(p), err)
	}
	st, _ := os.Stat(p)
	return string(b), st.Mode().Perm()
}

func TestFetchHTTPExecutableThroughCache(t *testing.T) {
	srv := serve(t, map[string][]byte{"/sha256/abc/k8sm-executor": []byte("#!/bin/sh\n")})
	f := newFetcher(t)
	uri := mesos.CommandInfo_URI{Value: srv.URL + "/sha256/abc/k8sm-executor", Executable: ptr(true), Extract: ptr(false), Cache: ptr(true)}
	for i := 0; i < 2; i++ {
		sb := t.TempDir()
		if err := f.Fetch(context.Background(), "c1", []mesos.CommandInfo_URI{uri}, sb, "root"); err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		body, mode := readMode(t, filepath.Join(sb, "k8sm-executor"))
		if body != "#!/bin/sh\n" || mode != 0o755 {
			t.Fatalf("fetch %d: got %q mode %v, want the served file with mode 0755", i, body, mode)
		}
	}
	if n := srv.gets.Load(); n != 1 {
		t.Fatalf("the cached URI was downloaded %d times, want once", n)
	}
	// Without cache every launch downloads.
	uri.Cache = ptr(false)
	if err := f.Fetch(context.Background(), "c2", []mesos.CommandInfo_URI{uri}, t.TempDir(), "root"); err != nil {
		t.Fatal(err)
	}
	if n := srv.gets.Load(); n != 2 {
		t.Fatalf("got %d downloads, want 2 after an uncached fetch", n)
	}
}

func TestFetchArchives(t *testing.T) {
	srv := serve(t, map[string][]byte{
		"/bundle.tar.gz": tgz(t, map[string]string{"bin/tool": "tool", "conf/a.yaml": "a: 1"}),
		"/z/files.zip":   zipped(t, "inner/z.txt", "zipped"),
		"/plain.txt":     []byte("plain"),
	})
	for _, cache := range []bool{false, true} {
		f := newFetcher(t)
		sb := t.TempDir()
		uris := []mesos.CommandInfo_URI{
			{Value: srv.URL + "/bundle.tar.gz", Cache: ptr(cache)}, // extract defaults to true
			{Value: srv.URL + "/z/files.zip", Extract: ptr(true), Cache: ptr(cache)},
			{Value: srv.URL + "/plain.txt", OutputFile: ptr("etc/renamed.txt"), Cache: ptr(cache)},
			{Value: srv.URL + "/bundle.tar.gz", Extract: ptr(false), OutputFile: ptr("kept.tar.gz"), Cache: ptr(cache)},
		}
		if err := f.Fetch(context.Background(), "c", uris, sb, "root"); err != nil {
			t.Fatalf("cache=%v: %v", cache, err)
		}
		for p, want := range map[string]string{"bin/tool": "tool", "conf/a.yaml": "a: 1", "inner/z.txt": "zipped", "etc/renamed.txt": "plain"} {
			if got, _ := readMode(t, filepath.Join(sb, p)); got != want {
				t.Errorf("cache=%v: %s = %q, want %q", cache, p, got, want)
			}
		}
		if _, err := os.Stat(filepath.Join(sb, "kept.tar.gz")); err != nil {
			t.Errorf("cache=%v: extract=false must keep the archive as it is: %v", cache, err)
		}
	}
}

// TestFetchFailures: the reasons the real agent gives, and the detail in the
// sandbox's stderr as mesos-fetcher logs it.
func TestFetchFailures(t *testing.T) {
	srv := serve(t, nil)
	local := filepath.Join(t.TempDir(), "exe")
	if err := os.WriteFile(local, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name        string
		uri         mesos.CommandInfo_URI
		err, stderr string
	}{
		{"404", mesos.CommandInfo_URI{Value: srv.URL + "/missing"}, "Failed to fetch all URIs for container 'cid': exited with status 1", "received HTTP return code 404"},
		{"404 cached", mesos.CommandInfo_URI{Value: srv.URL + "/missing", Cache: ptr(true)}, "Failed to fetch all URIs for container 'cid': exited with status 1", "received HTTP return code 404"},
		{"no path", mesos.CommandInfo_URI{Value: "http://host"}, "Could not fetch: Malformed URI (missing path): http://host", ""},
		{"quote", mesos.CommandInfo_URI{Value: "http://host/a'b"}, "Could not fetch: Illegal characters in URI", ""},
		{"absolute output", mesos.CommandInfo_URI{Value: local, OutputFile: ptr("/etc/x")}, "Could not fetch: URI output file must be within the sandbox directory", ""},
		{"relative file", mesos.CommandInfo_URI{Value: "file://relative/exe"}, "exited with status 1", "File URI only supports absolute paths"},
		{"relative path", mesos.CommandInfo_URI{Value: "relative/exe"}, "exited with status 1", "Mesos framework home was not specified"},
		{"hdfs", mesos.CommandInfo_URI{Value: "hdfs://nn/exe"}, "exited with status 1", "Failed to create HDFS client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := t.TempDir()
			err := newFetcher(t).Fetch(context.Background(), "cid", []mesos.CommandInfo_URI{{Value: local}, tc.uri}, sb, "root")
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got error %v, want one containing %q", err, tc.err)
			}
			b, _ := os.ReadFile(filepath.Join(sb, "stderr"))
			if !strings.Contains(string(b), tc.stderr) {
				t.Fatalf("sandbox stderr %q does not say %q", b, tc.stderr)
			}
		})
	}
}

func TestFetchLocalAndFrameworksHome(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, "exe"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFetcher(t)
	f.FrameworksHome = home
	sb := t.TempDir()
	uris := []mesos.CommandInfo_URI{{Value: "exe", Executable: ptr(true)}, {Value: "file://" + filepath.Join(home, "exe"), OutputFile: ptr("copy")}}
	if err := f.Fetch(context.Background(), "c", uris, sb, "root"); err != nil {
		t.Fatal(err)
	}
	if _, mode := readMode(t, filepath.Join(sb, "exe")); mode != 0o755 {
		t.Fatalf("exe has mode %v, want 0755", mode)
	}
	if _, mode := readMode(t, filepath.Join(sb, "copy")); mode != 0o644 {
		t.Fatalf("copy has mode %v, want 0644", mode)
	}
}

func TestExtractRefusesEscapes(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "evil.tgz")
	if err := os.WriteFile(src, tgz(t, map[string]string{"../../escaped": "x"}), 0o644); err != nil {
		t.Fatal(err)
	}
	sb := filepath.Join(dir, "sandbox")
	_ = os.Mkdir(sb, 0o755)
	if _, err := extract(src, sb); err == nil {
		t.Fatal("an archive entry outside the sandbox was extracted")
	}
}
