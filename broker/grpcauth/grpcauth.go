// Package grpcauth decides which clients may call the Broker API. The
// transport (mutual TLS, pkg/certfiles) says who a client is; this package
// says what it may do: the Broker's methods launch and kill pods and hold
// Mesos offers, so only the scheduler's identity may call them, and each
// client may hold only so many offer watches (each one is a goroutine and a
// copy of every offer event in the broker).
package grpcauth

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// brokerService is the prefix of the methods that need authorization; the
// health service (which replica leads) is open to every client the
// transport let in.
const brokerService = "/k8sm.broker.v1.Broker/"

const watchMethod = brokerService + "WatchOffers"

// Config of the authorizer.
type Config struct {
	// AllowedNames are the identities that may call the Broker: a client
	// is one if its verified certificate's common name or one of its
	// organizations is in the list.
	AllowedNames []string
	// RequireTLS makes a client without a verified certificate
	// Unauthenticated. Without it (plaintext serving on loopback, where
	// the transport authenticates nobody) every client is allowed and
	// named by its address.
	RequireTLS bool
	// MaxWatchesPerClient bounds the WatchOffers streams one identity
	// holds at once (0: no bound).
	MaxWatchesPerClient int
	// AllowedFlag names where AllowedNames come from, for the message a
	// refused client gets.
	AllowedFlag string
}

// Authorizer is a pair of gRPC interceptors enforcing Config.
type Authorizer struct {
	cfg Config

	mu      sync.Mutex
	watches map[string]int
}

// New returns an authorizer.
func New(cfg Config) *Authorizer {
	return &Authorizer{cfg: cfg, watches: map[string]int{}}
}

// ServerOptions are the interceptors to give grpc.NewServer.
func (a *Authorizer) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.unary), grpc.ChainStreamInterceptor(a.stream)}
}

func (a *Authorizer) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if _, err := a.authorize(ctx, info.FullMethod); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (a *Authorizer) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	who, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if info.FullMethod == watchMethod && a.cfg.MaxWatchesPerClient > 0 {
		release, err := a.acquireWatch(who)
		if err != nil {
			return err
		}
		defer release()
	}
	return handler(srv, ss)
}

// identity is who the client is: the names of its verified certificate, or
// (no TLS) its address alone.
type identity struct {
	name  string   // for messages and the watch bound
	names []string // what AllowedNames are matched against
	tls   bool
}

func identify(ctx context.Context) identity {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return identity{name: "unknown peer"}
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
		leaf := ti.State.VerifiedChains[0][0]
		id := identity{name: leaf.Subject.CommonName, tls: true}
		if len(leaf.Subject.Organization) > 0 {
			id.name += " (O=" + strings.Join(leaf.Subject.Organization, ",") + ")"
		}
		id.names = append([]string{leaf.Subject.CommonName}, leaf.Subject.Organization...)
		return id
	}
	host := p.Addr.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return identity{name: "address " + host}
}

func (a *Authorizer) authorize(ctx context.Context, method string) (identity, error) {
	id := identify(ctx)
	if !strings.HasPrefix(method, brokerService) {
		return id, nil
	}
	if !a.cfg.RequireTLS {
		return id, nil
	}
	if !id.tls {
		return id, status.Errorf(codes.Unauthenticated, "calling %s needs a client certificate the broker verifies (mutual TLS); %s presented none", method, id.name)
	}
	for _, n := range id.names {
		if n != "" && slices.Contains(a.cfg.AllowedNames, n) {
			return id, nil
		}
	}
	klog.FromContext(ctx).Info("Refused a Broker API call", "method", method, "client", id.name)
	return id, status.Errorf(codes.PermissionDenied, "client %s may not call %s: only the scheduler's identities %v (%s, matched against the certificate's CN and O) may use the Broker API", id.name, method, a.cfg.AllowedNames, a.cfg.AllowedFlag)
}

func (a *Authorizer) acquireWatch(id identity) (func(), error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.watches[id.name] >= a.cfg.MaxWatchesPerClient {
		return nil, status.Errorf(codes.ResourceExhausted, "client %s already holds %d offer watches, the most one client may (--grpc-max-watches-per-client): close one first", id.name, a.watches[id.name])
	}
	a.watches[id.name]++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.watches[id.name]--; a.watches[id.name] <= 0 {
			delete(a.watches, id.name)
		}
	}, nil
}

// String describes the policy for logs.
func (a *Authorizer) String() string {
	if !a.cfg.RequireTLS {
		return "plaintext: every client that reaches the address is trusted"
	}
	return fmt.Sprintf("mutual TLS; Broker API for %v", a.cfg.AllowedNames)
}
