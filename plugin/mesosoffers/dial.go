package mesosoffers

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/k8sm/k8sm/pkg/brokerapi"
)

// serviceConfig spreads calls over the replicas that report SERVING: only the
// broker's elected leader does, so calls follow the leader across failovers
// without the plugin knowing who leads.
var serviceConfig = fmt.Sprintf(`{
  "loadBalancingConfig": [{"round_robin": {}}],
  "healthCheckConfig": {"serviceName": %q}
}`, brokerapi.ServiceName)

func dial(args *Args) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if args.TLS != nil {
		c, err := tlsCredentials(args.TLS)
		if err != nil {
			return nil, err
		}
		creds = c
	}
	bo := backoff.DefaultConfig
	// grpc's default gives up to two minutes between attempts; a broker
	// that is back must be used again within seconds.
	bo.MaxDelay = args.ReconnectMaxDelay.Duration
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(serviceConfig),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: args.DialTimeout.Duration}),
	}
	target := args.BrokerAddresses[0]
	if len(args.BrokerAddresses) > 1 || !strings.Contains(target, "://") {
		// A fixed list of replicas: resolve it ourselves so that one
		// connection balances over all of them.
		r := manual.NewBuilderWithScheme("k8sm-broker")
		addrs := make([]resolver.Address, len(args.BrokerAddresses))
		for i, a := range args.BrokerAddresses {
			addrs[i] = resolver.Address{Addr: a}
		}
		r.InitialState(resolver.State{Addresses: addrs})
		opts = append(opts, grpc.WithResolvers(r))
		target = r.Scheme() + ":///brokers"
	}
	return grpc.NewClient(target, opts...)
}

func tlsCredentials(t *TLSArgs) (credentials.TransportCredentials, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading tls.caFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.caFile %s holds no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading tls.certFile/keyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}
