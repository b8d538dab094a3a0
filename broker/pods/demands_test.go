package pods

import (
	"slices"
	"sync"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// demandRecorder keeps the last demands the controller published.
type demandRecorder struct {
	mu   sync.Mutex
	last []string
}

func (r *demandRecorder) set(ds []podresources.Demand) {
	out := make([]string, 0, len(ds))
	for _, d := range ds {
		out = append(out, d.String())
	}
	slices.Sort(out)
	r.mu.Lock()
	r.last = out
	r.mu.Unlock()
}

func (r *demandRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.last)
}

// TestPendingDemandsFollowPendingPods: the offer cache is told the distinct
// demands of the pending pods, roles as the role policy resolves them (the
// built-in one: "*"); a bound, deleted or gated pod, or one whose roles the
// policy refuses, holds no offer.
func TestPendingDemandsFollowPendingPods(t *testing.T) {
	rec := &demandRecorder{}
	c := New(Config{Client: fake.NewSimpleClientset(), SchedulerName: "mesos-scheduler", Framework: &pendingRecorder{}, PendingDemands: rec.set})
	run(t, c)
	mk := func(uid, cpu string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: uid, UID: types.UID(uid)},
			Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", Containers: []v1.Container{{Name: "c",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("128Mi")}}}}}}
	}
	small, big := "cpus:1; mem:128; roles:*", "cpus:3; mem:128; roles:*"
	a, b, other := mk("a", "1"), mk("b", "1"), mk("c", "3")
	c.observe(a)
	c.observe(b)
	c.observe(other)
	if got := rec.get(); !slices.Equal(got, []string{small, big}) {
		t.Fatalf("three pending pods of two demands published %q", got)
	}
	refused := mk("d", "2")
	refused.Annotations = map[string]string{taskinfo.RolesAnnotation: "analytics"}
	c.observe(refused)
	gated := mk("e", "2")
	gated.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "example.com/hold"}}
	c.observe(gated)
	if got := rec.get(); !slices.Equal(got, []string{small, big}) {
		t.Fatalf("with a pod the role policy refuses and a gated one: published %q, want only the two demands", got)
	}
	bound := a.DeepCopy()
	bound.Spec.NodeName = "node-1"
	c.observe(bound)
	if got := rec.get(); !slices.Equal(got, []string{small, big}) {
		t.Fatalf("one of two pods of a demand bound: published %q, want the demand still (the other pod waits)", got)
	}
	c.deleted(cache.DeletedFinalStateUnknown{Key: "default/b", Obj: b})
	if got := rec.get(); !slices.Equal(got, []string{big}) {
		t.Fatalf("no pod of the small demand pending: published %q", got)
	}
	boundOther := other.DeepCopy()
	boundOther.Spec.NodeName = "node-2"
	c.observe(boundOther)
	if got := rec.get(); len(got) != 0 {
		t.Fatalf("nothing pending that the policy allows: published %q, want none", got)
	}
}
