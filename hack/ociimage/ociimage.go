// Package ociimage assembles single-layer container images from files on
// this machine and writes them as tarballs that `ctr images import`,
// `docker load` and `podman load` read — no Docker daemon, no registry.
package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Spec is one image.
type Spec struct {
	// Ref names the image, e.g. k8sm/k8sm-broker:latest.
	Ref string
	// Files maps a path in the image (no leading slash) to a file here.
	Files map[string]string
	// Data maps a path in the image to its content (mode 0644).
	Data map[string][]byte
	// Dirs are made (mode 0755; "tmp/" 1777).
	Dirs       []string
	Entrypoint []string
	Env        []string
	// User runs the entrypoint, e.g. "65532:65532".
	User string
}

// epoch keeps digests the same from one build of the same files to the next.
var epoch = time.Unix(0, 0)

// Write writes the image of s to path as a tarball.
func Write(path string, s Spec) error {
	layerTar, err := layer(s)
	if err != nil {
		return err
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("making the layer of %s: %w", s.Ref, err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		return fmt.Errorf("assembling %s: %w", s.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	// containerd imports only images of the host's platform.
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Created.Time = epoch
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Env = s.Env
	cf.Config.User = s.User
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return fmt.Errorf("configuring %s: %w", s.Ref, err)
	}
	tag, err := name.NewTag(s.Ref)
	if err != nil {
		return fmt.Errorf("image name %s: %w", s.Ref, err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func layer(s Spec) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range s.Dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: mode, ModTime: epoch, Typeflag: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	put := func(name string, b []byte, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), ModTime: epoch, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	for _, name := range sortedKeys(s.Files) {
		src := s.Files[name]
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading %s for image %s: %w", src, s.Ref, err)
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		mode := int64(0o644)
		if st.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if err := put(name, b, mode); err != nil {
			return nil, err
		}
	}
	for _, name := range sortedKeys(s.Data) {
		if err := put(name, s.Data[name], 0o644); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
