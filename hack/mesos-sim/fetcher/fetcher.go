// Package fetcher is a Mesos 1.11 agent's fetcher: it puts a container's
// CommandInfo URIs into its sandbox before the executor starts — local
// paths and file:// copied, http(s):// downloaded, archives extracted,
// executables chmod'ed, and URIs with cache=true kept in a per-agent cache so
// that each is downloaded once. Failures read as the real agent's, which
// frameworks see in the TASK_FAILED that follows (src/launcher/fetcher.cpp,
// src/slave/containerizer/fetcher.cpp).
package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"
)

// Fetcher is one agent's fetcher and its cache.
type Fetcher struct {
	// CacheDir is --fetcher_cache_dir; each user has a directory below it.
	CacheDir string
	// FrameworksHome is --frameworks_home, prepended to relative URIs.
	FrameworksHome string
	// Client downloads http(s) URIs; nil means http.DefaultClient.
	Client *http.Client

	mu     sync.Mutex
	serial int
	cache  map[cacheKey]*entry
}

type cacheKey struct{ user, uri string }

// entry is one cached download; ready closes when it is in place or failed.
type entry struct {
	file  string
	ready chan struct{}
	err   error
}

// New returns a fetcher with an empty cache: like the real agent, it clears
// the cache directory, whose files it no longer knows.
func New(cacheDir, frameworksHome string) (*Fetcher, error) {
	if err := os.RemoveAll(cacheDir); err != nil {
		return nil, fmt.Errorf("clearing the fetcher cache %s: %w", cacheDir, err)
	}
	return &Fetcher{CacheDir: cacheDir, FrameworksHome: frameworksHome, cache: map[cacheKey]*entry{}}, nil
}

// Fetch puts uris into sandbox for container containerID, run as user.
// Its error is the containerizer's failure, as the agent puts it in the
// task status after "Failed to launch container: "; the reason in detail is
// appended to the sandbox's stderr, where the real mesos-fetcher logs.
func (f *Fetcher) Fetch(ctx context.Context, containerID string, uris []mesos.CommandInfo_URI, sandbox, user string) error {
	if len(uris) == 0 {
		return nil
	}
	for _, u := range uris {
		if err := validate(u); err != nil {
			return fmt.Errorf("Could not fetch: %w", err)
		}
	}
	for _, u := range uris {
		where, err := f.fetchOne(ctx, u, sandbox, user)
		if err != nil {
			logToSandbox(sandbox, fmt.Sprintf("Failed to fetch '%s': %v", u.Value, err))
			return fmt.Errorf("Failed to fetch all URIs for container '%s': exited with status 1", containerID)
		}
		klog.V(2).InfoS("Fetched URI", "uri", u.Value, "to", where)
	}
	return nil
}

func logToSandbox(sandbox, msg string) {
	f, err := os.OpenFile(filepath.Join(sandbox, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	_, _ = fmt.Fprintf(f, "%s mesos-sim fetcher: %s\n", time.Now().UTC().Format(time.RFC3339), msg)
}

// Basename names the local copy of uri as Fetcher::basename does: the part
// after the last '/', query strings included.
func Basename(uri string) (string, error) {
	if strings.ContainsAny(uri, "\\'\x00") {
		return "", errors.New("Illegal characters in URI")
	}
	if i := strings.Index(uri, "://"); i > 1 {
		p := uri[i+3:]
		slash := strings.IndexByte(p, '/')
		if slash < 0 || len(p) <= slash+1 {
			return "", errors.New("Malformed URI (missing path): " + uri)
		}
		return p[strings.LastIndexByte(p, '/')+1:], nil
	}
	return path.Base(uri), nil
}

func validate(u mesos.CommandInfo_URI) error {
	if _, err := Basename(strings.TrimLeft(u.Value, " \t\n")); err != nil {
		return err
	}
	if u.OutputFile != nil {
		switch out := *u.OutputFile; {
		case out == "":
			return errors.New("URI output file path is empty")
		case strings.HasPrefix(out, "/"):
			return errors.New("URI output file must be within the sandbox directory")
		}
	}
	return nil
}

// destination is where the local copy of u goes in sandbox.
func destination(u mesos.CommandInfo_URI, sandbox string) (string, error) {
	name := u.GetOutputFile()
	if u.OutputFile == nil {
		var err error
		if name, err = Basename(u.Value); err != nil {
			return "", err
		}
	}
	if dir := filepath.Dir(name); dir != "." {
		if err := os.MkdirAll(filepath.Join(sandbox, dir), 0o755); err != nil {
			return "", fmt.Errorf("Unable to create subdirectory %s in sandbox: %w", dir, err)
		}
	}
	return filepath.Join(sandbox, name), nil
}

func (f *Fetcher) fetchOne(ctx context.Context, u mesos.CommandInfo_URI, sandbox, user string) (string, error) {
	dst, err := destination(u, sandbox)
	if err != nil {
		return "", err
	}
	if !u.GetCache() {
		if err := f.download(ctx, u.Value, dst); err != nil {
			return "", err
		}
		return place(u, dst, dst, sandbox, false)
	}
	src, err := f.cached(ctx, u.Value, user)
	if err != nil {
		return "", err
	}
	return place(u, src, dst, sandbox, true)
}

// place finishes a downloaded file at src: chmod'ed if executable, else
// extracted if it is an archive and extract is set (the default), else
// copied — unless it already is the sandbox copy.
func place(u mesos.CommandInfo_URI, src, dst, sandbox string, fromCache bool) (string, error) {
	if u.GetExecutable() {
		if fromCache {
			if err := copyFile(src, dst); err != nil {
				return "", err
			}
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			return "", fmt.Errorf("Failed to chmod executable '%s': %w", dst, err)
		}
		return dst, nil
	}
	// extract defaults to true in mesos.proto.
	if u.Extract == nil || *u.Extract {
		// A cached download is named c<n>-<basename>: the name still ends
		// in the URI's extension.
		extracted, err := extract(src, sandbox)
		if err != nil {
			return "", err
		}
		if extracted {
			return sandbox, nil
		}
	}
	if fromCache {
		if err := copyFile(src, dst); err != nil {
			return "", err
		}
	}
	return dst, nil
}

// cached returns the cache file of uri for user, downloading it unless it is
// there or being downloaded by another launch.
func (f *Fetcher) cached(ctx context.Context, uri, user string) (string, error) {
	key := cacheKey{user: user, uri: uri}
	f.mu.Lock()
	if f.cache == nil {
		f.cache = map[cacheKey]*entry{}
	}
	e := f.cache[key]
	if e == nil {
		base, _ := Basename(uri)
		if len(base) > 20 {
			base = base[:10] + "_" + base[len(base)-10:]
		}
		f.serial++
		dir := filepath.Join(f.CacheDir, user)
		e = &entry{file: filepath.Join(dir, "c"+strconv.Itoa(f.serial)+"-"+base), ready: make(chan struct{})}
		f.cache[key] = e
		f.mu.Unlock()
		e.err = os.MkdirAll(dir, 0o755)
		if e.err != nil {
			e.err = fmt.Errorf("Could not create the fetcher cache directory: %w", e.err)
		} else {
			e.err = f.download(ctx, uri, e.file)
		}
		if e.err != nil {
			// A failed entry is forgotten: the next launch tries again.
			f.mu.Lock()
			delete(f.cache, key)
			f.mu.Unlock()
		}
		close(e.ready)
	} else {
		f.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	return e.file, e.err
}

// download copies uri to dst: local paths and file:// URIs by copy, http(s)
// by GET; other schemes would go to the Hadoop client, which no agent here
// has.
func (f *Fetcher) download(ctx context.Context, rawURI, dst string) error {
	uri := strings.TrimLeft(rawURI, " \t\n")
	isFile := strings.HasPrefix(uri, "file://")
	if isFile || !strings.Contains(uri, "://") {
		p := strings.TrimPrefix(strings.TrimPrefix(uri, "file://"), "localhost")
		if !filepath.IsAbs(p) {
			if isFile {
				return errors.New("File URI only supports absolute paths")
			}
			if f.FrameworksHome == "" {
				return errors.New("A relative path was passed for the resource but the Mesos framework home was not specified. Please either provide this config option or avoid using a relative path")
			}
			p = filepath.Join(f.FrameworksHome, p)
		}
		return copyFile(p, dst)
	}
	switch {
	case strings.HasPrefix(uri, "http://"), strings.HasPrefix(uri, "https://"):
		return f.get(ctx, uri, dst)
	case strings.HasPrefix(uri, "ftp://"), strings.HasPrefix(uri, "ftps://"):
		return errors.New("Error downloading resource: FTP is not supported by mesos-sim")
	}
	return errors.New("Failed to create HDFS client: Failed to execute 'hadoop version'; the command was either not found or exited with a non-zero exit status: 127")
}

func (f *Fetcher) get(ctx context.Context, uri, dst string) error {
	c := f.Client
	if c == nil {
		c = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return fmt.Errorf("Error downloading resource: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("Error downloading resource: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("Error downloading resource, received HTTP return code %d", resp.StatusCode)
	}
	return writeFile(dst, resp.Body)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("Failed to copy '%s' to '%s': %w", src, dst, err)
	}
	defer in.Close()
	if err := writeFile(dst, in); err != nil {
		return fmt.Errorf("Failed to copy '%s' to '%s': %w", src, dst, err)
	}
	return nil
}

// writeFile writes r to dst through a temporary file, so that nobody (a
// concurrent launch reading the cache) sees half of it.
func writeFile(dst string, r io.Reader) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".fetch-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, r)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}
