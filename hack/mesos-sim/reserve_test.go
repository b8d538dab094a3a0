package mesossim_test

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
)

func reservedCPUs(o mesos.Offer, refinement bool) (reserved, unreserved float64) {
	for _, r := range o.Resources {
		if r.Name != "cpus" {
			continue
		}
		isReserved := r.GetRole() == "web" && r.Reservation != nil
		if refinement {
			isReserved = len(r.Reservations) == 1 && r.Reservations[0].GetRole() == "web" &&
				r.Reservations[0].GetType() == mesos.Resource_ReservationInfo_DYNAMIC && r.Role == nil
		}
		if isReserved {
			reserved += r.GetScalar().GetValue()
		} else {
			unreserved += r.GetScalar().GetValue()
		}
	}
	return
}

// TestReserveUnreserve: dynamic reservations change what later offers
// contain, in the pre-refinement format (role + reservation) or, for
// RESERVATION_REFINEMENT frameworks, the reservations stack.
func TestReserveUnreserve(t *testing.T) {
	for i, ct := range encodings {
		refinement := i == 1
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:1024")}})
			ctx := testCtx(t)
			info := fwInfo("reserver", mesos.FrameworkInfo_Capability_MULTI_ROLE)
			if refinement {
				info = fwInfo("reserver", mesos.FrameworkInfo_Capability_MULTI_ROLE, mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT)
			}
			info.Roles = []string{"web"}
			principal := "ops"
			info.Principal = &principal
			sched := subscribe(t, ctx, s.MasterURL(), ct, info)
			o := nextOffer(t, ctx, sched)
			role := "web"
			scalar := mesos.SCALAR
			res := mesos.Resource{Name: "cpus", Type: &scalar, Scalar: &mesos.Value_Scalar{Value: 1},
				AllocationInfo: &mesos.Resource_AllocationInfo{Role: &role}}
			if refinement {
				dyn := mesos.Resource_ReservationInfo_DYNAMIC
				res.Reservations = []mesos.Resource_ReservationInfo{{Type: &dyn, Role: &role, Principal: &principal}}
			} else {
				res.Role = &role
				res.Reservation = &mesos.Resource_ReservationInfo{Principal: &principal}
			}
			zero := 0.0
			accept := func(op mesos.Offer_Operation, offer mesos.Offer) {
				t.Helper()
				if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_ACCEPT, Accept: &scheduler.Call_Accept{
					OfferIDs: []mesos.OfferID{offer.ID}, Operations: []mesos.Offer_Operation{op}, Filters: &mesos.Filters{RefuseSeconds: &zero}}}); err != nil {
					t.Fatal(err)
				}
			}
			accept(mesos.Offer_Operation{Type: mesos.Offer_Operation_RESERVE, Reserve: &mesos.Offer_Operation_Reserve{Resources: []mesos.Resource{res}}}, o)
			o2 := nextOffer(t, ctx, sched)
			if r, u := reservedCPUs(o2, refinement); r != 1 || u != 3 {
				t.Fatalf("after RESERVE: reserved %v unreserved %v in %v", r, u, o2.Resources)
			}
			accept(mesos.Offer_Operation{Type: mesos.Offer_Operation_UNRESERVE, Unreserve: &mesos.Offer_Operation_Unreserve{Resources: []mesos.Resource{res}}}, o2)
			o3 := nextOffer(t, ctx, sched)
			if r, u := reservedCPUs(o3, refinement); r != 0 || u != 4 {
				t.Fatalf("after UNRESERVE: still reserved in %v", o3.Resources)
			}
		})
	}
}
