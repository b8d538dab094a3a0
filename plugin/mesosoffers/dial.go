package mesosoffers

import (
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/health" // client-side health checking
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/certfiles"
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
		t := args.TLS
		c, err := certfiles.ClientCredentials(certfiles.ClientFiles{CAFile: t.CAFile, CertFile: t.CertFile, KeyFile: t.KeyFile, ServerName: t.ServerName})
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
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
			// Each replica's certificate is checked against the host
			// the configuration names for it (the target "brokers"
			// names none); tls.serverName, when set, wins.
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				host = a
			}
			addrs[i] = resolver.Address{Addr: a, ServerName: host}
		}
		r.InitialState(resolver.State{Addresses: addrs})
		opts = append(opts, grpc.WithResolvers(r))
		target = r.Scheme() + ":///brokers"
	}
	return grpc.NewClient(target, opts...)
}
