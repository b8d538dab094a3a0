package grpcauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// as is the context of a call from a client whose verified certificate
// has cn and orgs (nil: a plaintext client).
func as(cn string, orgs ...string) context.Context {
	p := &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 4444}}
	if cn != "" {
		leaf := &x509.Certificate{Subject: pkix.Name{CommonName: cn, Organization: orgs}}
		p.AuthInfo = credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}}
	}
	return peer.NewContext(context.Background(), p)
}

func TestOnlyAllowedIdentitiesCallTheBroker(t *testing.T) {
	a := New(Config{AllowedNames: []string{"k8sm-scheduler", "k8sm-schedulers"}, RequireTLS: true, AllowedFlag: "--grpc-allowed-clients"})
	ok := func(context.Context, any) (any, error) { return "done", nil }
	for _, tc := range []struct {
		ctx    context.Context
		method string
		want   codes.Code
	}{
		{as("k8sm-scheduler"), "/k8sm.broker.v1.Broker/Kill", codes.OK},
		{as("replica-2", "k8sm-schedulers"), "/k8sm.broker.v1.Broker/Launch", codes.OK},
		{as("system:node:agent-1", "system:nodes"), "/k8sm.broker.v1.Broker/Kill", codes.PermissionDenied},
		{as("K8SM-SCHEDULER"), "/k8sm.broker.v1.Broker/Reserve", codes.PermissionDenied},
		{as(""), "/k8sm.broker.v1.Broker/Unreserve", codes.Unauthenticated},
		{as("system:node:agent-1"), "/grpc.health.v1.Health/Check", codes.OK},
	} {
		_, err := a.unary(tc.ctx, nil, &grpc.UnaryServerInfo{FullMethod: tc.method}, ok)
		if status.Code(err) != tc.want {
			t.Errorf("%s by %v: %v, want %v", tc.method, identify(tc.ctx).name, err, tc.want)
		}
		if tc.want == codes.PermissionDenied && !strings.Contains(err.Error(), "--grpc-allowed-clients") {
			t.Errorf("%s: %v does not say where the allowed identities are set", tc.method, err)
		}
	}

	// Plaintext serving (loopback only) authenticates nobody: all allowed.
	open := New(Config{AllowedNames: []string{"k8sm-scheduler"}})
	if _, err := open.unary(as(""), nil, &grpc.UnaryServerInfo{FullMethod: "/k8sm.broker.v1.Broker/Kill"}, ok); err != nil {
		t.Errorf("plaintext: %v", err)
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (f fakeStream) Context() context.Context { return f.ctx }

func TestWatchesAreBoundedPerClient(t *testing.T) {
	a := New(Config{AllowedNames: []string{"k8sm-scheduler"}, RequireTLS: true, MaxWatchesPerClient: 2})
	info := &grpc.StreamServerInfo{FullMethod: watchMethod, IsServerStream: true}
	release := make(chan struct{})
	started := make(chan error, 10)
	hold := func(any, grpc.ServerStream) error { started <- nil; <-release; return nil }
	done := make(chan error, 10)
	for i := 0; i < 2; i++ {
		go func() { done <- a.stream(nil, fakeStream{ctx: as("k8sm-scheduler")}, info, hold) }()
		<-started
	}
	err := a.stream(nil, fakeStream{ctx: as("k8sm-scheduler")}, info, hold)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("third watch: %v, want ResourceExhausted", err)
	}
	// Another identity has its own budget (and is refused for other reasons).
	if err := a.stream(nil, fakeStream{ctx: as("other")}, info, hold); status.Code(err) != codes.PermissionDenied {
		t.Errorf("other identity: %v, want PermissionDenied", err)
	}
	close(release)
	<-done
	<-done
	go func() { done <- a.stream(nil, fakeStream{ctx: as("k8sm-scheduler")}, info, hold) }()
	<-started
	if err := <-done; err != nil {
		t.Errorf("a watch after the others ended: %v", err)
	}
}
