package fetcher

import (
	"archive/tar"
	"archive/zip"
	"compress/bzip2"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// extract unpacks src into dir when its name says it is an archive (the
// extensions the real fetcher knows) and reports whether it did.
func extract(src, dir string) (bool, error) {
	has := func(exts ...string) bool {
		for _, e := range exts {
			if strings.HasSuffix(src, e) {
				return true
			}
		}
		return false
	}
	var err error
	switch {
	case has(".tar"):
		err = untarFile(src, dir, nil)
	case has(".tgz", ".tar.gz"):
		err = untarFile(src, dir, func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) })
	case has(".tbz2", ".tar.bz2"):
		err = untarFile(src, dir, func(r io.Reader) (io.Reader, error) { return bzip2.NewReader(r), nil })
	case has(".txz", ".tar.xz"):
		// libarchive reads xz; Go's standard library does not.
		err = errors.New("xz archives are not supported by mesos-sim")
	case has(".zip"):
		err = unzip(src, dir)
	case has(".gz"):
		// Not an archive: gunzip the one file beside the others.
		dst := filepath.Join(dir, filepath.Base(strings.TrimSuffix(src, ".gz")))
		if gerr := gunzip(src, dst); gerr != nil {
			return false, fmt.Errorf("Failed to extract '%s': 'gunzip -d -c' failed: %w", src, gerr)
		}
		return true, nil
	default:
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("Failed to extract archive '%s' to '%s': %w", src, dir, err)
	}
	return true, nil
}

func gunzip(src, dst string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return err
	}
	return writeFile(dst, zr)
}

// inside joins name to dir, refusing names that climb out of it.
func inside(dir, name string) (string, error) {
	p := filepath.Join(dir, name)
	if p != dir && !strings.HasPrefix(p, dir+string(filepath.Separator)) {
		return "", fmt.Errorf("entry %q is outside the destination", name)
	}
	return p, nil
}

func untarFile(src, dir string, decompress func(io.Reader) (io.Reader, error)) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if decompress != nil {
		if r, err = decompress(f); err != nil {
			return err
		}
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		p, err := inside(dir, h.Name)
		if err != nil {
			return err
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, mode|0o700)
		case tar.TypeReg:
			err = writeEntry(p, mode, tr)
		case tar.TypeSymlink:
			if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
				_ = os.Remove(p)
				err = os.Symlink(h.Linkname, p)
			}
		default:
			// Devices, fifos and hard links have no place in a sandbox.
			continue
		}
		if err != nil {
			return err
		}
	}
}

func unzip(src, dir string) error {
	zr, err := zip.OpenReader(src)
	if err != nil {
		return err
	}
	defer zr.Close()
	for _, zf := range zr.File {
		p, err := inside(dir, zf.Name)
		if err != nil {
			return err
		}
		if zf.FileInfo().IsDir() {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
			continue
		}
		rc, err := zf.Open()
		if err != nil {
			return err
		}
		err = writeEntry(p, zf.Mode().Perm(), rc)
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func writeEntry(p string, mode os.FileMode, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, r)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
