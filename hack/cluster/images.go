package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WebappImage is the sample workload's image (hack/images/webapp).
const WebappImage = "k8sm.local/webapp:latest"

// busybox gives the sample image a shell, so that `kubectl exec` has
// something to run; it is optional (Debian's busybox-static).
const busybox = "/usr/bin/busybox"

// localImage is an image made from one static program of hack/images.
type localImage struct {
	ref     string
	program string // file name in Config.imageBinDir()
	shell   bool   // add busybox and its applets
}

var localImages = []localImage{
	{ref: PauseImage, program: "pause"},
	{ref: WebappImage, program: "webapp", shell: true},
	{ref: CoreDNSImage, program: "coredns"},
}

// buildImages writes each local image as a docker-archive tarball under
// dir/images and returns their paths. There is no registry on these
// machines, so images are assembled here from static binaries.
func buildImages(c Config) ([]string, error) {
	outDir := filepath.Join(c.StateDir, "images")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating image dir: %w", err)
	}
	var out []string
	for _, li := range localImages {
		bin := filepath.Join(c.imageBinDir(), li.program)
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("image program %s is not built (%s missing): run `make build` first", li.program, bin)
		}
		path := filepath.Join(outDir, li.program+".tar")
		if err := writeImage(path, li, bin); err != nil {
			return nil, err
		}
		out = append(out, path)
	}
	return out, nil
}

func writeImage(path string, li localImage, bin string) error {
	layerTar, err := imageLayer(li, bin)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return fmt.Errorf("making layer of %s: %w", li.ref, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return fmt.Errorf("assembling %s: %w", li.ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	// containerd imports only images for the host's platform.
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/" + li.program}
	cf.Config.Env = []string{"PATH=/bin"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return fmt.Errorf("configuring %s: %w", li.ref, err)
	}
	tag, err := name.NewTag(li.ref)
	if err != nil {
		return fmt.Errorf("image name %s: %w", li.ref, err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func imageLayer(li localImage, bin string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	// A fixed time keeps image digests the same from one build to the next.
	mtime := time.Unix(0, 0)
	addFile := func(name, src string, mode int64) error {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("reading %s for image %s: %w", src, li.ref, err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(len(b)), ModTime: mtime, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	}
	dirs := []string{"tmp/", "etc/", "bin/"}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Name: d, Mode: mode, ModTime: mtime, Typeflag: tar.TypeDir}); err != nil {
			return nil, err
		}
	}
	if err := addFile(li.program, bin, 0o755); err != nil {
		return nil, err
	}
	if li.shell {
		if _, err := os.Stat(busybox); err == nil {
			if err := addFile("bin/busybox", busybox, 0o755); err != nil {
				return nil, err
			}
			for _, applet := range []string{"sh", "ls", "cat", "echo", "ps", "sleep", "wget", "env", "hostname", "id", "top", "kill", "mkdir", "rm"} {
				if err := tw.WriteHeader(&tar.Header{Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777, ModTime: mtime, Typeflag: tar.TypeSymlink}); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// loadImages builds the local images and imports them into containerd.
func loadImages(ctx context.Context, c Config) error {
	var socks []string
	if sharedContainerd(c) {
		socks = append(socks, c.ContainerdSocket())
	}
	for i := 1; i <= c.machines(); i++ {
		socks = append(socks, c.AgentContainerdSocket(i))
	}
	if len(socks) == 0 {
		return nil
	}
	paths, err := buildImages(c)
	if err != nil {
		return err
	}
	for _, sock := range socks {
		for _, p := range paths {
			if err := importImage(ctx, sock, p); err != nil {
				return err
			}
		}
	}
	return nil
}
