// Package certfiles builds TLS configurations from PEM files that are read
// again whenever they change on disk, so that rotated certificates (a
// re-mounted Secret, a renewed file) take effect on the next connection
// without a restart. Both ends of the plugin↔broker channel use it.
package certfiles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"k8s.io/klog/v2"
)

// stamp is what says a file changed: a rewrite changes the modification
// time or the size, and a Secret update swaps the file behind a symlink,
// which os.Stat follows.
type stamp struct {
	mod  time.Time
	size int64
}

func stat(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{mod: fi.ModTime(), size: fi.Size()}, nil
}

// reloading holds a value parsed from files and parses them again when any
// of them changed. A file that changed into something unreadable (a
// half-written rotation) keeps the last good value in use: refusing every
// new connection would turn a rotation into an outage.
type reloading[T any] struct {
	what  string
	files []string
	parse func() (T, error)

	mu     sync.Mutex
	stamps []stamp
	val    T
	loaded bool
}

func (r *reloading[T]) get() (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stamps := make([]stamp, len(r.files))
	var statErr error
	for i, f := range r.files {
		s, err := stat(f)
		if err != nil {
			statErr = fmt.Errorf("reading %s: %w", r.what, err)
			break
		}
		stamps[i] = s
	}
	if statErr == nil && r.loaded && equalStamps(stamps, r.stamps) {
		return r.val, nil
	}
	if statErr == nil {
		v, err := r.parse()
		if err == nil {
			if r.loaded {
				klog.InfoS("Reloaded TLS files", "what", r.what, "files", r.files)
			}
			r.val, r.stamps, r.loaded = v, stamps, true
			return v, nil
		}
		statErr = err
	}
	if r.loaded {
		klog.ErrorS(statErr, "Keeping the TLS files last read: the changed ones cannot be used", "what", r.what, "files", r.files)
		return r.val, nil
	}
	var zero T
	return zero, statErr
}

func equalStamps(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].mod.Equal(b[i].mod) || a[i].size != b[i].size {
			return false
		}
	}
	return true
}

// KeyPair is a certificate and its key, from two PEM files.
type KeyPair struct{ r *reloading[*tls.Certificate] }

// NewKeyPair reads the pair once, so that a wrong path or a key that does
// not match the certificate fails at start-up.
func NewKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{r: &reloading[*tls.Certificate]{
		what:  fmt.Sprintf("certificate %s and key %s", certFile, keyFile),
		files: []string{certFile, keyFile},
		parse: func() (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
			}
			return &c, nil
		},
	}}
	if _, err := k.r.get(); err != nil {
		return nil, err
	}
	return k, nil
}

// Current returns the pair as the files hold it now.
func (k *KeyPair) Current() (*tls.Certificate, error) { return k.r.get() }

// CABundle is a pool of CA certificates from one PEM file.
type CABundle struct{ r *reloading[*x509.CertPool] }

// NewCABundle reads the bundle once; a file without any certificate is an
// error, not an empty pool that would refuse every peer.
func NewCABundle(file string) (*CABundle, error) {
	b := &CABundle{r: &reloading[*x509.CertPool]{
		what:  "CA bundle " + file,
		files: []string{file},
		parse: func() (*x509.CertPool, error) {
			pem, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%s holds no PEM certificate", file)
			}
			return pool, nil
		},
	}}
	if _, err := b.r.get(); err != nil {
		return nil, err
	}
	return b, nil
}

// Current returns the pool as the file holds it now.
func (b *CABundle) Current() (*x509.CertPool, error) { return b.r.get() }

// ServerConfig is a TLS configuration that requires every client to present
// a certificate signed by a CA of clientCAFile, serving the pair of
// certFile/keyFile; all three files are re-read when they change.
func ServerConfig(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" || clientCAFile == "" {
		return nil, errors.New("a serving certificate, its key and a client CA bundle are all required")
	}
	pair, err := NewKeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	cas, err := NewCABundle(clientCAFile)
	if err != nil {
		return nil, err
	}
	base := &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	cfg := base.Clone()
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cert, err := pair.Current()
		if err != nil {
			return nil, err
		}
		pool, err := cas.Current()
		if err != nil {
			return nil, err
		}
		c := base.Clone()
		c.Certificates = []tls.Certificate{*cert}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
		return c, nil
	}
	return cfg, nil
}

// ClientFiles name what a TLS client uses: CAFile verifies the server (empty:
// the system pool), CertFile/KeyFile are the client's own certificate
// (empty: none), ServerName overrides the name checked in the server's
// certificate.
type ClientFiles struct {
	CAFile, CertFile, KeyFile, ServerName string
}

// ClientCredentials are gRPC transport credentials for a client whose files
// are re-read when they change: each new connection (a reconnect after the
// server rotated its CA, say) uses what the files hold then.
func ClientCredentials(f ClientFiles) (credentials.TransportCredentials, error) {
	c := &clientCreds{files: f}
	if f.CAFile != "" {
		b, err := NewCABundle(f.CAFile)
		if err != nil {
			return nil, err
		}
		c.cas = b
	}
	if f.CertFile != "" || f.KeyFile != "" {
		k, err := NewKeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, err
		}
		c.pair = k
	}
	if _, err := c.current(); err != nil {
		return nil, err
	}
	return c, nil
}

type clientCreds struct {
	files ClientFiles
	cas   *CABundle
	pair  *KeyPair
}

func (c *clientCreds) current() (credentials.TransportCredentials, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.files.ServerName}
	if c.cas != nil {
		pool, err := c.cas.Current()
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if c.pair != nil {
		cert, err := c.pair.Current()
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return credentials.NewTLS(cfg), nil
}

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cur, err := c.current()
	if err != nil {
		return nil, nil, err
	}
	// grpc's TLS credentials check the authority they are handed, not
	// tls.Config.ServerName: an explicit server name must go this way.
	if c.files.ServerName != "" {
		authority = c.files.ServerName
	}
	return cur.ClientHandshake(ctx, authority, conn)
}

func (c *clientCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("certfiles: client credentials cannot serve")
}

func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2", ServerName: c.files.ServerName}
}

func (c *clientCreds) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

//nolint:staticcheck // part of the interface until grpc removes it
func (c *clientCreds) OverrideServerName(name string) error {
	c.files.ServerName = name
	return nil
}
