package mesosoffers

import (
	"context"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/certfiles"
	"github.com/k8sm/k8sm/pkg/certfiles/certfilestest"
)

// TestDialMutualTLS: the plugin reaches a broker that requires mutual TLS
// with its tls args, listed by address (each replica checked against its
// own host), and without a client certificate it is refused.
func TestDialMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := certfilestest.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	sc, sk := ca.Issue(t, dir, "broker", "k8sm-broker", x509.ExtKeyUsageServerAuth)
	cc, ck := ca.Issue(t, dir, "scheduler", "k8sm-scheduler", x509.ExtKeyUsageClientAuth)
	cfg, err := certfiles.ServerConfig(sc, sk, caFile)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	hs := health.NewServer()
	hs.SetServingStatus(brokerapi.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	check := func(tls *TLSArgs, addrs ...string) error {
		args := &Args{BrokerAddresses: addrs, TLS: tls}
		args.SetDefaults()
		conn, err := dial(args)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: brokerapi.ServiceName})
		return err
	}
	addr := lis.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	full := &TLSArgs{CAFile: caFile, CertFile: cc, KeyFile: ck}
	if err := check(full, addr); err != nil {
		t.Errorf("one address: %v", err)
	}
	if err := check(full, "localhost:"+port, addr); err != nil {
		t.Errorf("two addresses of the broker: %v", err)
	}
	if err := check(&TLSArgs{CAFile: caFile}, addr); err == nil {
		t.Error("a plugin without a client certificate got through")
	}
	if err := check(&TLSArgs{CAFile: caFile, CertFile: cc, KeyFile: ck, ServerName: "localhost"}, addr); err != nil {
		t.Errorf("serverName localhost, which the broker's certificate names: %v", err)
	}
	if err := check(&TLSArgs{CAFile: caFile, CertFile: cc, KeyFile: ck, ServerName: "k8sm-broker.example"}, addr); err == nil {
		t.Error("a serverName the broker's certificate does not name was accepted")
	}
}
