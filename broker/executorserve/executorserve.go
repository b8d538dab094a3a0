// Package executorserve ships the k8sm-executor binary to Mesos agents: the
// broker serves it over HTTP at a path naming its sha256, and the
// ExecutorInfo names that URI for the agent's fetcher. Mesos 1.11's
// CommandInfo.URI has no checksum field, so the address is the checksum: a
// new binary is a new URI, hence a new ExecutorInfo and executor id (agents
// drain to the new executor), and the fetcher may cache it forever.
package executorserve

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// PathPrefix starts every served path: /executor/sha256/<hex>/<name>.
const PathPrefix = "/executor/sha256/"

// Binary is an executor binary held open for serving.
type Binary struct {
	name   string
	sum    string
	size   int64
	mod    time.Time
	reader io.ReaderAt
}

// Open hashes the file at path and keeps it open, so that the bytes served
// stay the ones hashed when the file is replaced (a new build or package
// writes a new file; the open one keeps its content).
func Open(path string) (*Binary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening the executor binary: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening the executor binary: %w", err)
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("the executor binary %s is not a regular file", path)
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, st.Size())); err != nil {
		f.Close()
		return nil, fmt.Errorf("hashing the executor binary %s: %w", path, err)
	}
	return &Binary{name: filepath.Base(path), sum: hex.EncodeToString(h.Sum(nil)), size: st.Size(), mod: st.ModTime(), reader: f}, nil
}

// SHA256 is the hex sha256 of the binary.
func (b *Binary) SHA256() string { return b.sum }

// Name is the file name the agent gives its copy (the URI's basename).
func (b *Binary) Name() string { return b.name }

// Path is where the binary is served.
func (b *Binary) Path() string { return PathPrefix + b.sum + "/" + b.name }

// URI names the binary for the fetcher, served under base (the broker's
// executor address as agents reach it): executable, not extracted, and
// cached by the agent, which the content address makes safe.
func (b *Binary) URI(base string) mesos.CommandInfo_URI {
	yes, no := true, false
	return mesos.CommandInfo_URI{Value: strings.TrimSuffix(base, "/") + b.Path(), Executable: &yes, Extract: &no, Cache: &yes}
}

// ServeHTTP serves the binary at Path and says what it serves elsewhere: an
// agent asking for another hash holds an ExecutorInfo of another broker
// build.
func (b *Binary) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	if r.URL.Path != b.Path() {
		http.Error(w, fmt.Sprintf("no such executor binary; this broker serves %s (sha256 %s)", b.Path(), b.sum), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	// Content-addressed: never changes under this name.
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("ETag", `"sha256:`+b.sum+`"`)
	http.ServeContent(w, r, b.name, b.mod, io.NewSectionReader(b.reader, 0, b.size))
}
