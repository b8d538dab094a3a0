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

	"google.golang.org/grpc/credentials"

	"github.com/k8sm/k8sm/pkg/filereload"
)

// KeyPair is a certificate and its key, from two PEM files.
type KeyPair struct {
	r *filereload.Value[*tls.Certificate]
}

// NewKeyPair reads the pair once, so that a wrong path or a key that does
// not match the certificate fails at start-up.
func NewKeyPair(certFile, keyFile string) (*KeyPair, error) {
	r, err := filereload.New(fmt.Sprintf("certificate %s and key %s", certFile, keyFile), []string{certFile, keyFile},
		func() (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("loading certificate %s with key %s: %w", certFile, keyFile, err)
			}
			return &c, nil
		})
	if err != nil {
		return nil, err
	}
	return &KeyPair{r: r}, nil
}

// Current returns the pair as the files hold it now.
func (k *KeyPair) Current() (*tls.Certificate, error) { return k.r.Get() }

// CABundle is a pool of CA certificates from one PEM file.
type CABundle struct {
	r *filereload.Value[*x509.CertPool]
}

// NewCABundle reads the bundle once; a file without any certificate is an
// error, not an empty pool that would refuse every peer.
func NewCABundle(file string) (*CABundle, error) {
	r, err := filereload.New("CA bundle "+file, []string{file}, func() (*x509.CertPool, error) {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", file)
		}
		return pool, nil
	})
	if err != nil {
		return nil, err
	}
	return &CABundle{r: r}, nil
}

// Current returns the pool as the file holds it now.
func (b *CABundle) Current() (*x509.CertPool, error) { return b.r.Get() }

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
