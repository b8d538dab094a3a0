package app

import (
	"errors"
	"fmt"
	"net"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/k8sm/k8sm/broker/grpcauth"
	"github.com/k8sm/k8sm/pkg/certfiles"
)

// GRPCSecurityOptions secure the Broker API: mutual TLS says who a client
// is, and only the scheduler's identities may call it.
type GRPCSecurityOptions struct {
	CertFile            string
	KeyFile             string
	ClientCAFile        string
	AllowedClients      []string
	MaxWatchesPerClient int
}

// DefaultGRPCAllowedClient is the identity (certificate CN or O) of the k8sm
// scheduler's client certificate that the broker lets in by default.
const DefaultGRPCAllowedClient = "k8sm-scheduler"

func newGRPCSecurityOptions() GRPCSecurityOptions {
	return GRPCSecurityOptions{AllowedClients: []string{DefaultGRPCAllowedClient}, MaxWatchesPerClient: 8}
}

func (s *GRPCSecurityOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.CertFile, "grpc-tls-cert-file", s.CertFile, "The broker's serving certificate (PEM) for the Broker gRPC API. With --grpc-tls-private-key-file and --grpc-client-ca-file it turns on mutual TLS, which any non-loopback --grpc-bind-address requires. Re-read when it changes.")
	fs.StringVar(&s.KeyFile, "grpc-tls-private-key-file", s.KeyFile, "The key of --grpc-tls-cert-file.")
	fs.StringVar(&s.ClientCAFile, "grpc-client-ca-file", s.ClientCAFile, "CA certificates (PEM) that sign the client certificates the Broker gRPC API accepts. Re-read when it changes.")
	fs.StringSliceVar(&s.AllowedClients, "grpc-allowed-clients", s.AllowedClients, "The client identities (a certificate's CN, or one of its O) that may call the Broker API (reserve, launch, kill, watch offers). Other verified clients get PermissionDenied; the health service is open to every verified client.")
	fs.IntVar(&s.MaxWatchesPerClient, "grpc-max-watches-per-client", s.MaxWatchesPerClient, "How many WatchOffers streams one client identity may hold at once (each scheduler replica holds one).")
}

func (s *GRPCSecurityOptions) tls() bool {
	return s.CertFile != "" || s.KeyFile != "" || s.ClientCAFile != ""
}

func (s *GRPCSecurityOptions) validate(bindAddress string) []error {
	var errs []error
	if s.tls() {
		if s.CertFile == "" || s.KeyFile == "" || s.ClientCAFile == "" {
			errs = append(errs, errors.New("--grpc-tls-cert-file, --grpc-tls-private-key-file and --grpc-client-ca-file go together: the Broker API serves mutual TLS or (on loopback only) plaintext"))
		}
		if len(s.AllowedClients) == 0 {
			errs = append(errs, errors.New("--grpc-allowed-clients must name the scheduler's certificate identity (CN or O): with none, no client may use the Broker API"))
		}
	} else if bindAddress != "" && !loopback(bindAddress) {
		errs = append(errs, fmt.Errorf("--grpc-bind-address=%s is not a loopback address, so the Broker API needs mutual TLS: anyone who reaches it could launch and kill pods. Set --grpc-tls-cert-file, --grpc-tls-private-key-file and --grpc-client-ca-file (see docs/security.md), or bind to 127.0.0.1", bindAddress))
	}
	if s.MaxWatchesPerClient < 1 {
		errs = append(errs, fmt.Errorf("--grpc-max-watches-per-client=%d must be at least 1", s.MaxWatchesPerClient))
	}
	return errs
}

// loopback says whether every address host:port binds to is a loopback
// one. An empty host, 0.0.0.0 or a name other than localhost is not.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// serverOptions are the gRPC server options that carry the policy out.
func (s *GRPCSecurityOptions) serverOptions() ([]grpc.ServerOption, error) {
	auth := grpcauth.New(grpcauth.Config{
		AllowedNames: s.AllowedClients, RequireTLS: s.tls(), MaxWatchesPerClient: s.MaxWatchesPerClient,
		AllowedFlag: "--grpc-allowed-clients",
	})
	opts := auth.ServerOptions()
	if s.tls() {
		cfg, err := certfiles.ServerConfig(s.CertFile, s.KeyFile, s.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--grpc-tls-cert-file/--grpc-tls-private-key-file/--grpc-client-ca-file: %w", err)
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg)))
	}
	return opts, nil
}
