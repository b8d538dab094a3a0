package grpcserver

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/grpc/codes"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/rolepolicy"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// TestRolePolicyAttack: the broker hands out resources, so it applies the
// role policy itself, whatever a client asks. Before the policy a Reserve for
// a pod of any namespace took resources of any role the framework held.
func TestRolePolicyAttack(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(t.TempDir(), "role-policy.yaml")
	write := func(nss string, age time.Duration) {
		doc := "apiVersion: k8sm.io/v1alpha1\nkind: RolePolicy\nroles:\n- role: analytics\n  namespaces: [" + nss + "]\n"
		if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-age)
		_ = os.Chtimes(path, mt, mt)
	}
	write("team-a", time.Hour)
	src, err := rolepolicy.NewSource(path)
	if err != nil {
		t.Fatal(err)
	}
	e.server.SetRolePolicy(src)

	role := "analytics"
	o := offer("o1", "a1", "node-1", 4, 1024)
	o.Resources = podresources.ToMesos(podresources.FromMesos(o.Resources)["*"], role)
	for i := range o.Resources {
		o.Resources[i].AllocationInfo = &mesos.Resource_AllocationInfo{Role: &role}
	}
	e.cache.Add(o)
	ctx := context.Background()
	reserve := func(ns, n string, roles ...string) (*brokerv1.Reservation, error) {
		resp, err := e.client.Reserve(ctx, &brokerv1.ReserveRequest{
			Pod: &brokerv1.PodRef{Uid: "uid-" + n, Namespace: ns, Name: n}, NodeName: "node-1",
			Demand: &brokerv1.Demand{Cpus: 1, Roles: roles}})
		return resp.GetReservation(), err
	}

	_, err = reserve("team-b", "x", "analytics")
	wantCode(t, err, codes.PermissionDenied, `role policy `+path+` does not let namespace "team-b" use Mesos role analytics (it may use: *)`)
	_, err = reserve("team-b", "y")
	wantCode(t, err, codes.ResourceExhausted, "no resources offered for role *")

	r, err := reserve("team-a", "z")
	if err != nil || r.GetRole() != "analytics" {
		t.Fatalf("team-a's reservation: %v, %v; want one of role analytics", r, err)
	}
	// A pod of another namespace sent under the reservation.
	pod := func(ns string) []byte {
		b, _ := json.Marshal(&v1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: "z", Namespace: ns, UID: types.UID("uid-z")}, Spec: v1.PodSpec{NodeName: "node-1"}})
		return b
	}
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: pod("team-b")})
	wantCode(t, err, codes.InvalidArgument, "belongs to pod team-a/z, the pod sent is team-b/z")

	// The policy changed between Reserve and Launch: the launch is refused
	// and the claim released.
	write("team-c", 0)
	_, err = e.client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: pod("team-a")})
	wantCode(t, err, codes.PermissionDenied, `does not let namespace "team-a" use Mesos role analytics`)
	if _, err := e.cache.Get(r.GetId()); err == nil {
		t.Error("the refused reservation still holds its resources")
	}
	if len(e.launcher.launches) != 0 {
		t.Errorf("refused launches reached Mesos: %d", len(e.launcher.launches))
	}
}
