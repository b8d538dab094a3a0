package certfiles

import (
	"context"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/k8sm/k8sm/pkg/certfiles/certfilestest"
)

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
	ca, other := certfilestest.NewCA(t, "ca"), certfilestest.NewCA(t, "other")
	caFile := filepath.Join(dir, "ca.crt")
	certfilestest.Write(t, caFile, ca.PEM)
	sc, sk := ca.Issue(t, dir, "server", "broker", x509.ExtKeyUsageServerAuth)
	cc, ck := ca.Issue(t, dir, "client", "scheduler", x509.ExtKeyUsageClientAuth)
	oc, ok := other.Issue(t, dir, "stranger", "scheduler", x509.ExtKeyUsageClientAuth)
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
	ca1 := certfilestest.NewCA(t, "ca1")
	caFile := filepath.Join(dir, "ca.crt")
	certfilestest.Write(t, caFile, ca1.PEM)
	sc, sk := ca1.Issue(t, dir, "server", "broker", x509.ExtKeyUsageServerAuth)
	cc, ck := ca1.Issue(t, dir, "client", "scheduler", x509.ExtKeyUsageClientAuth)
	old := filepath.Join(dir, "old")
	if err := os.Mkdir(old, 0o700); err != nil {
		t.Fatal(err)
	}
	oldCA := filepath.Join(old, "ca.crt")
	certfilestest.Write(t, oldCA, ca1.PEM)
	occ, ock := ca1.Issue(t, old, "client", "scheduler", x509.ExtKeyUsageClientAuth)

	cfg, err := ServerConfig(sc, sk, caFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, credentials.NewTLS(cfg))
	if err := check(t, addr, ClientFiles{CAFile: caFile, CertFile: cc, KeyFile: ck}); err != nil {
		t.Fatalf("before the rotation: %v", err)
	}

	ca2 := certfilestest.NewCA(t, "ca2")
	certfilestest.Write(t, caFile, ca2.PEM)
	ca2.Issue(t, dir, "server", "broker", x509.ExtKeyUsageServerAuth)
	ca2.Issue(t, dir, "client", "scheduler", x509.ExtKeyUsageClientAuth)
	if err := check(t, addr, ClientFiles{CAFile: caFile, CertFile: cc, KeyFile: ck}); err != nil {
		t.Errorf("a client with the rotated files: %v", err)
	}
	if err := check(t, addr, ClientFiles{CAFile: oldCA, CertFile: occ, KeyFile: ock}); err == nil {
		t.Error("a client of the CA rotated away still got in")
	}

	// A half-written rotation keeps the last good files in use.
	certfilestest.Write(t, sc, []byte("not a certificate"))
	if err := check(t, addr, ClientFiles{CAFile: caFile, CertFile: cc, KeyFile: ck}); err != nil {
		t.Errorf("after a broken certificate file: %v, want the last good one served", err)
	}
}

func TestBadFilesFailAtStart(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.crt")
	certfilestest.Write(t, empty, []byte("nothing"))
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
