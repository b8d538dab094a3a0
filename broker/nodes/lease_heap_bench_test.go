package nodes

import (
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// BenchmarkLeaseHeap: the live heap of the Leases the mirror keeps for its
// next renewals at 10,000 agents (one per agent, as the API server answers
// the broker's Create or Update, decoded from protobuf, then leanLease).
// The broker has no Lease informer: this is all it keeps of Leases.
func BenchmarkLeaseHeap(b *testing.B) {
	const agents = 10000
	wire := make([][]byte, agents)
	now := metav1.NewMicroTime(time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC))
	for i := range wire {
		name := fmt.Sprintf("hollow-%05d", i)
		l := &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: leaseNamespace, UID: types.UID(fmt.Sprintf("0b3e5c1e-8a7d-4f2b-9c1d-%012d", i)),
				ResourceVersion: fmt.Sprint(1000000 + i), CreationTimestamp: metav1.NewTime(now.Time),
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: types.UID(fmt.Sprintf("7f1e5c1e-8a7d-4f2b-9c1d-%012d", i))}},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: LeaseHolder, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "coordination.k8s.io/v1", Time: &metav1.Time{Time: now.Time},
					FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:ownerReferences":{".":{},"k:{\"uid\":\"x\"}":{}}},"f:spec":{"f:holderIdentity":{},"f:leaseDurationSeconds":{},"f:renewTime":{}}}`)}}}},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(LeaseHolder), LeaseDurationSeconds: ptr.To[int32](40), RenewTime: &now},
		}
		var err error
		if wire[i], err = l.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
	reportKeptHeap(b, wire, "lease", func(w []byte) (any, error) {
		l := &coordinationv1.Lease{}
		if err := l.Unmarshal(w); err != nil {
			return nil, err
		}
		return leanLease(l), nil
	})
}
