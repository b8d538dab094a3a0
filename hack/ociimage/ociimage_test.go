package ociimage

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestWriteLoadable: the tarball loads as the tagged image, runs its
// entrypoint as the given user, and holds the files with their modes; the
// same files give the same digest.
func TestWriteLoadable(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog")
	if err := os.WriteFile(prog, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := Spec{Ref: "k8sm/test:v1", Files: map[string]string{"prog": prog}, Data: map[string][]byte{"etc/passwd": []byte("x")},
		Dirs: []string{"etc/", "tmp/"}, Entrypoint: []string{"/prog"}, User: "65532:65532"}
	p1, p2 := filepath.Join(dir, "1.tar"), filepath.Join(dir, "2.tar")
	if err := Write(p1, s); err != nil {
		t.Fatal(err)
	}
	if err := Write(p2, s); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("k8sm/test:v1")
	img, err := tarball.ImageFromPath(p1, &tag)
	if err != nil {
		t.Fatalf("loading the tarball as %s: %v", tag, err)
	}
	img2, _ := tarball.ImageFromPath(p2, &tag)
	d1, _ := img.Digest()
	d2, _ := img2.Digest()
	if d1 != d2 {
		t.Errorf("two writes of the same files: digests %s and %s", d1, d2)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/prog" || cf.OS != "linux" {
		t.Errorf("config %+v", cf.Config)
	}
	tr := tar.NewReader(mutate.Extract(img))
	modes := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[h.Name] = h.Mode
	}
	if modes["prog"] != 0o755 || modes["etc/passwd"] != 0o644 || modes["tmp"] != 0o1777 {
		t.Errorf("modes %v", modes)
	}
}
