//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/certfiles"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// TestBrokerAPIAttacks tries, against the broker program, what a pod or a
// host that reaches the Broker API would do to other tenants' pods — kill
// their tasks, drop their reservations, hold offers, open watches without
// end — and checks that each is refused while the scheduler's identity
// keeps working.
func TestBrokerAPIAttacks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newBrokerEnv(t, ctx)
	e.maxWatches = 2
	b := e.startBroker(ctx, "broker-1")
	e.waitServing(ctx, b)
	victim := e.createPod(ctx, "victim", "")
	e.schedule(ctx, b, victim)
	e.waitTask(ctx, victim.UID, "TASK_RUNNING")
	victimRef := &brokerv1.PodRef{Uid: string(victim.UID), Namespace: victim.Namespace, Name: victim.Name}
	pki := e.cfg.PKI()

	call := func(conn *grpc.ClientConn) map[string]error {
		c := brokerv1.NewBrokerClient(conn)
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		out := map[string]error{}
		_, out["Kill"] = c.Kill(cctx, &brokerv1.KillRequest{Pod: victimRef})
		_, out["Unreserve"] = c.Unreserve(cctx, &brokerv1.UnreserveRequest{Pod: victimRef})
		_, out["Reserve"] = c.Reserve(cctx, &brokerv1.ReserveRequest{Pod: &brokerv1.PodRef{Uid: "attacker", Namespace: "evil", Name: "hog"}, NodeName: "agent-a", Demand: &brokerv1.Demand{Cpus: 1, MemMb: 64}})
		if w, err := c.WatchOffers(cctx, &brokerv1.WatchOffersRequest{}); err != nil {
			out["WatchOffers"] = err
		} else {
			_, out["WatchOffers"] = w.Recv()
		}
		return out
	}

	t.Run("a client without a certificate is refused", func(t *testing.T) {
		tlsNoCert, err := certfiles.ClientCredentials(certfiles.ClientFiles{CAFile: pki.CACert()})
		if err != nil {
			t.Fatal(err)
		}
		for name, opt := range map[string]grpc.DialOption{
			"plaintext":                      grpc.WithTransportCredentials(insecure.NewCredentials()),
			"TLS without client certificate": grpc.WithTransportCredentials(tlsNoCert),
		} {
			conn, err := grpc.NewClient(b.grpc, opt)
			if err != nil {
				t.Fatal(err)
			}
			// Refused in the TLS handshake: the call never reaches the
			// broker (gRPC reports the failed connection as Unavailable).
			for method, err := range call(conn) {
				if err == nil || status.Code(err) == codes.PermissionDenied {
					t.Errorf("%s: %s: %v, want the connection refused", name, method, err)
				}
			}
			_ = conn.Close()
		}
	})

	t.Run("a certificate of another identity gets PermissionDenied", func(t *testing.T) {
		// A kubelet's certificate: signed by the CA the broker trusts,
		// but not the scheduler's.
		if _, err := pki.NodeCredentials("agent-a", e.cfg.APIServerURL(), ""); err != nil {
			t.Fatal(err)
		}
		conn := e.dial(b.grpc, certfiles.ClientFiles{CAFile: pki.CACert(), CertFile: pki.Cert("node-agent-a"), KeyFile: pki.Key("node-agent-a")})
		defer conn.Close()
		for method, err := range call(conn) {
			if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "system:node:agent-a") || !strings.Contains(err.Error(), "--grpc-allowed-clients") {
				t.Errorf("%s: %v, want PermissionDenied naming the client and --grpc-allowed-clients", method, err)
			}
		}
		// Which replica serves is no secret: the health service answers
		// every verified client.
		if r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: brokerapi.ServiceName}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health for another verified identity: %v %v", r, err)
		}
	})

	t.Run("one client holds a bounded number of offer watches", func(t *testing.T) {
		wctx, wcancel := context.WithCancel(ctx)
		defer wcancel()
		var streams []grpc.ServerStreamingClient[brokerv1.WatchOffersResponse]
		open := func() error {
			w, err := b.client.WatchOffers(wctx, &brokerv1.WatchOffersRequest{})
			if err != nil {
				return err
			}
			if _, err := w.Recv(); err != nil {
				return err
			}
			streams = append(streams, w)
			return nil
		}
		for i := 0; i < e.maxWatches; i++ {
			if err := open(); err != nil {
				t.Fatalf("watch %d of %d allowed: %v", i+1, e.maxWatches, err)
			}
		}
		if err := open(); status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "--grpc-max-watches-per-client") {
			t.Errorf("watch %d: %v, want ResourceExhausted naming --grpc-max-watches-per-client", e.maxWatches+1, err)
		}
	})

	t.Run("the broker's credentials cannot write a Node it did not create", func(t *testing.T) {
		worker, err := e.kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rc, err := clientcmd.BuildConfigFromFlags("", e.cfg.PKI().Kubeconfig("k8sm-broker"))
		if err != nil {
			t.Fatal(err)
		}
		asBroker := kubernetes.NewForConfigOrDie(rc)
		// The API server takes a moment to start enforcing a new policy.
		e.eventually(ctx, "the broker's update of worker-1 denied by the policy", func() (bool, string) {
			n, err := asBroker.CoreV1().Nodes().Get(ctx, worker.Name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			// A patch, as the broker writes its own Nodes (RBAC grants it
			// no update): the policy is what must refuse it.
			taints, _ := json.Marshal(map[string]any{"spec": map[string]any{"taints": append(n.Spec.Taints, corev1.Taint{Key: "evil", Effect: corev1.TaintEffectNoExecute})}})
			_, err = asBroker.CoreV1().Nodes().Patch(ctx, worker.Name, types.MergePatchType, taints, metav1.PatchOptions{})
			if err == nil {
				// Undo, so that the next try starts from the worker's Node.
				n, _ = e.kube.CoreV1().Nodes().Get(ctx, worker.Name, metav1.GetOptions{})
				n.Spec.Taints = nil
				_, _ = e.kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
				return false, "update allowed"
			}
			return apierrors.IsForbidden(err) || apierrors.IsInvalid(err), err.Error()
		})
	})

	// Nothing of the above reached the victim.
	if ts, _ := e.taskStates(); ts[string(victim.UID)] != "TASK_RUNNING" {
		t.Errorf("the victim's task is %s after the attacks, want TASK_RUNNING", ts[string(victim.UID)])
	}
}
