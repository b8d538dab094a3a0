package app

import (
	"context"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/k8sm/k8sm/broker/grpcserver"
	"github.com/k8sm/k8sm/broker/launch"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/certfiles"
	"github.com/k8sm/k8sm/pkg/certfiles/certfilestest"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

type killRecorder struct {
	mu    sync.Mutex
	kills []string
}

func (k *killRecorder) Launch(context.Context, string, *v1.Pod, []byte) (launch.Launched, error) {
	return launch.Launched{}, nil
}

func (k *killRecorder) Kill(_ context.Context, uid types.UID, _ string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.kills = append(k.kills, string(uid))
	return taskinfo.TaskID(uid, ""), nil
}

// TestBrokerAPIServesOnlyTheScheduler: the Broker API as Run serves it with
// the --grpc-* flags refuses a client without a certificate and one whose
// certificate names someone else, and serves the scheduler's. (Today's
// plaintext server let the first kill any task.)
func TestBrokerAPIServesOnlyTheScheduler(t *testing.T) {
	dir := t.TempDir()
	ca := certfilestest.NewCA(t, "ca")
	caFile := ca.WriteCA(t, dir, "ca.crt")
	sc, sk := ca.Issue(t, dir, "broker", "k8sm-broker", x509.ExtKeyUsageServerAuth)
	cc, ck := ca.Issue(t, dir, "scheduler", DefaultGRPCAllowedClient, x509.ExtKeyUsageClientAuth)
	nc, nk := ca.Issue(t, dir, "node", "system:node:agent-1", x509.ExtKeyUsageClientAuth)

	o := NewOptions()
	o.GRPC.CertFile, o.GRPC.KeyFile, o.GRPC.ClientCAFile = sc, sk, caFile
	if errs := o.GRPC.validate("0.0.0.0:10350"); len(errs) > 0 {
		t.Fatal(errs)
	}
	opts, err := o.GRPC.serverOptions()
	if err != nil {
		t.Fatal(err)
	}
	k := &killRecorder{}
	srv := grpcserver.New(offers.New(offers.Config{}), k)
	srv.SetServing(true)
	g := grpc.NewServer(opts...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	kill := func(opt grpc.DialOption) error {
		conn, err := grpc.NewClient(lis.Addr().String(), opt)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = brokerv1.NewBrokerClient(conn).Kill(ctx, &brokerv1.KillRequest{Pod: &brokerv1.PodRef{Uid: "victim", Namespace: "tenant-a", Name: "victim"}})
		return err
	}
	withFiles := func(f certfiles.ClientFiles) grpc.DialOption {
		c, err := certfiles.ClientCredentials(f)
		if err != nil {
			t.Fatal(err)
		}
		return grpc.WithTransportCredentials(c)
	}
	if err := kill(grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Error("a plaintext client killed a task")
	}
	if err := kill(withFiles(certfiles.ClientFiles{CAFile: caFile})); err == nil {
		t.Error("a client without a certificate killed a task")
	}
	if err := kill(withFiles(certfiles.ClientFiles{CAFile: caFile, CertFile: nc, KeyFile: nk})); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a kubelet's certificate: %v, want PermissionDenied", err)
	}
	if len(k.kills) != 0 {
		t.Fatalf("tasks killed by refused clients: %v", k.kills)
	}
	if err := kill(withFiles(certfiles.ClientFiles{CAFile: caFile, CertFile: cc, KeyFile: ck})); err != nil {
		t.Errorf("the scheduler's certificate: %v", err)
	}
	if len(k.kills) != 1 {
		t.Errorf("kills %v, want the scheduler's one", k.kills)
	}
}
