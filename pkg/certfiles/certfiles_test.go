package certfiles

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newCA(t *testing.T, name string) testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for cn signed by ca to dir/name.{crt,key}.
func (ca testCA) issue(t *testing.T, dir, name, cn string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: n, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	write(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	return certFile, keyFile
}

// write replaces a file as a Secret update does: a new file renamed over
// the old one, with a modification time that differs even on a coarse clock.
func write(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err == nil {
		later := fi.ModTime().Add(time.Second)
		_ = os.Chtimes(tmp, later, later)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func serve(t *testing.T, cfg credentials.TransportCredentials) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(cfg))
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return lis.Addr().String()
}

func check(t *testing.T, addr string, f ClientFiles) error {
	t.Helper()
	creds, err := ClientCredentials(f)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// TestServerRequiresClientCertificates: only clients with a certificate of
// the client CA get in.
func TestServerRequiresClientCertificates(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, "ca"), newCA(t, "other")
	caFile := filepath.Join(dir, "ca.crt")
	write(t, caFile, ca.pem)
	sc, sk := ca.issue(t, dir, "server", "broker", x509.ExtKeyUsageServerAuth)
	cc, ck := ca.issue(t, dir, "client", "scheduler", x509.ExtKeyUsageClientAuth)
	oc, ok := other.issue(t, dir, "stranger", "scheduler", x509.ExtKeyUsageClientAuth)
	cfg, err := ServerConfig(sc, sk, caFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, credentials.NewTLS(cfg))
	if err := check(t, addr, ClientFiles{CAFile: caFile, CertFile: cc, KeyFile: ck}); err != nil {
		t.Errorf("client of the CA: %v", err)
	}
	if err := check(t, addr, ClientFiles{CAFile: caFile}); err == nil {
		t.Error("a client without a certificate got in")
	}
	if err := check(t, addr, ClientFiles{CAFile: caFile, CertFile: oc, KeyFile: ok}); err == nil {
		t.Error("a client of another CA got in")
	}
}

// TestRotatedFilesAreUsedWithoutRestart: after the files change (a new CA,
// new certificates), new connections use them — the old client is refused
// and the new one accepted by the same running server.
func TestRotatedFilesAreUsedWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca1 := newCA(t, "ca1")
	caFile := filepath.Join(dir, "ca.crt")
	write(t, caFile, ca1.pem)
	sc, sk := ca1.issue(t, dir, "server", "broker", x509.ExtKeyUsageServerAuth)
	cc, ck := ca1.issue(t, dir, "client", "scheduler", x509.ExtKeyUsageClientAuth)
	old := filepath.Join(dir, "old")
	if err := os.Mkdir(old, 0o700); err != nil {
		t.Fatal(err)
	}
	oldCA := filepath.Join(old, "ca.crt")
	write(t, oldCA, ca1.pem)
	occ, ock := ca1.issue(t, old, "client", "scheduler", x509.ExtKeyUsageClientAuth)

	cfg, err := ServerConfig(sc, sk, caFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, credentials.NewTLS(cfg))
	if err := check(t, addr, ClientFiles{CAFile: caFile, CertFile: cc, KeyFile: ck}); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}

	ca2 := newCA(t, "ca2")
	write(t, caFile, ca2.pem)
	ca2.issue(t, dir, "server", "broker", x509.ExtKeyUsageServerAuth)
	ca2.issue(t, dir, "client", "scheduler", x509.ExtKeyUsageClientAuth)
	if err := check(t, addr, ClientFiles{CAFile: caFile, CertFile: cc, KeyFile: ck}); err != nil {
		t.Errorf("a client with the rotated files: %v", err)
	}
	if err := check(t, addr, ClientFiles{CAFile: oldCA, CertFile: occ, KeyFile: ock}); err == nil {
		t.Error("a client of the CA rotated away still got in")
	}

	// A half-written rotation keeps the last good files in use.
	write(t, sc, []byte("not a certificate"))
	if err := check(t, addr, ClientFiles{CAFile: caFile, CertFile: cc, KeyFile: ck}); err != nil {
		t.Errorf("after a broken certificate file: %v, want the last good one served", err)
	}
}

func TestBadFilesFailAtStart(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.crt")
	write(t, empty, []byte("nothing"))
	if _, err := NewCABundle(empty); err == nil {
		t.Error("a CA file without a certificate was accepted")
	}
	if _, err := NewKeyPair(filepath.Join(dir, "missing.crt"), filepath.Join(dir, "missing.key")); err == nil {
		t.Error("a missing key pair was accepted")
	}
	if _, err := ServerConfig("", "", ""); err == nil {
		t.Error("a server configuration without files was accepted")
	}
}
