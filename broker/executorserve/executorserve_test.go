package executorserve

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServesWhatItHashed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "k8sm-executor")
	content := []byte("executor build 1")
	if err := os.WriteFile(p, content, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(content)
	if b.SHA256() != hex.EncodeToString(sum[:]) {
		t.Fatalf("sha256 %s, want %x", b.SHA256(), sum)
	}
	// A new build replaces the file; the broker keeps serving what it
	// hashed, under the old address.
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("executor build 2"), 0o755); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(b)
	defer srv.Close()
	u := b.URI(srv.URL + "/")
	if !u.GetExecutable() || u.Extract == nil || *u.Extract || !u.GetCache() {
		t.Fatalf("URI %+v: want executable, extract=false (Mesos defaults it to true), cache", u)
	}
	if want := srv.URL + "/executor/sha256/" + b.SHA256() + "/k8sm-executor"; u.Value != want {
		t.Fatalf("URI %s, want %s", u.Value, want)
	}
	resp, err := http.Get(u.Value)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != string(content) {
		t.Fatalf("GET: %d %q, want 200 %q", resp.StatusCode, got, content)
	}
	resp, err = http.Get(srv.URL + "/executor/sha256/0000/k8sm-executor")
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(msg), b.SHA256()) {
		t.Fatalf("another hash: %d %q, want 404 naming what is served", resp.StatusCode, msg)
	}
}

func TestOpenRefusesDirectories(t *testing.T) {
	if _, err := Open(t.TempDir()); err == nil {
		t.Fatal("a directory was accepted as the executor binary")
	}
}
