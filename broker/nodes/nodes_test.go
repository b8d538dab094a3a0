package nodes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/master"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/broker/offers"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// TestNodeFromAgent: attributes become k8sm.io/attribute-* labels, the
// broker's taint is added once, the kubelet's own labels stay, and
// capacity is the agent's resources in Kubernetes units.
func TestNodeFromAgent(t *testing.T) {
	a := &agentState{id: "S1", hostname: "h1", attributes: attributes([]mesos.Attribute{
		{Name: "rack", Type: mesos.TEXT, Text: &mesos.Value_Text{Value: "r1"}},
		{Name: "weight", Type: mesos.SCALAR, Scalar: &mesos.Value_Scalar{Value: 2.5}},
		{Name: "zones", Type: mesos.SET, Set: &mesos.Value_Set{Item: []string{"a"}}},
	})}
	n := &v1.Node{}
	n.Labels = map[string]string{"kubelet.example/own": "x"}
	m := New(Config{})
	m.desired(n, a)
	m.desired(n, a)
	want := map[string]string{"kubelet.example/own": "x", taskinfo.AttributeLabelPrefix + "rack": "r1", taskinfo.AttributeLabelPrefix + "weight": "2.5", v1.LabelHostname: "h1", v1.LabelOSStable: "linux", OwnerLabel: Owner}
	if len(n.Labels) != len(want) {
		t.Errorf("labels %v, want %v", n.Labels, want)
	}
	for k, v := range want {
		if n.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, n.Labels[k], v)
		}
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != taskinfo.AgentTaintKey || n.Spec.Taints[0].Effect != v1.TaintEffectNoSchedule {
		t.Errorf("taints %v", n.Spec.Taints)
	}
	if n.Annotations[taskinfo.AgentIDAnnotation] != "S1" {
		t.Errorf("agent id annotation %q", n.Annotations[taskinfo.AgentIDAnnotation])
	}
	rl := resourceList(podresources.Resources{Scalars: podresources.Scalars{CPUs: 3500, MemMB: 2048000, DiskMB: 1024000}})
	cpu, mem, disk := rl[v1.ResourceCPU], rl[v1.ResourceMemory], rl[v1.ResourceEphemeralStorage]
	if cpu.MilliValue() != 3500 || mem.Value() != 2048<<20 || disk.Value() != 1024<<20 {
		t.Errorf("capacity cpu=%s mem=%s disk=%s, want 3500m, 2Gi, 1Gi", cpu.String(), mem.String(), disk.String())
	}
}

// A kubelet that finds the broker's Lease keeps its holder and only writes
// renewTime: the last writer of renewTime tells who renews.
func TestRenewedByOther(t *testing.T) {
	owns := func(manager string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate,
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:renewTime":{}}}`)}}
	}
	holds := metav1.ManagedFieldsEntry{Manager: LeaseHolder, Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:holderIdentity":{},"f:leaseDurationSeconds":{}}}`)}}
	for name, c := range map[string]struct {
		fields []metav1.ManagedFieldsEntry
		want   bool
	}{
		"broker renews":              {[]metav1.ManagedFieldsEntry{owns(LeaseHolder)}, false},
		"kubelet renews":             {[]metav1.ManagedFieldsEntry{holds, owns("k8sm-executor")}, true},
		"no managed fields (a fake)": {nil, false},
	} {
		l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{ManagedFields: c.fields}}
		if got := renewedByOther(l); got != c.want {
			t.Errorf("%s: renewedByOther = %v, want %v", name, got, c.want)
		}
	}
}

// TestNewNodeReadyAfterOneSync: the control plane writes a new Node at once
// (the node lifecycle controller taints it not-ready), so the object Create
// returned is stale by the time the broker writes its status. The Node of a
// new agent must still be Ready, and its Lease held, after one sync.
func TestNewNodeReadyAfterOneSync(t *testing.T) {
	client := apiServerLike(t, true)
	m := New(Config{Client: client})
	a := &agentState{id: "S1", hostname: "h1", capacity: podresources.Resources{Scalars: podresources.Scalars{CPUs: 2000, MemMB: 1024000}}}
	if err := m.sync(context.Background(), a); err != nil {
		t.Fatalf("sync: %v", err)
	}
	n, err := client.CoreV1().Nodes().Get(context.Background(), "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || (c.Type == v1.NodeReady && c.Status == v1.ConditionTrue)
	}
	if !ready {
		t.Errorf("Node conditions after one sync %v, want Ready", n.Status.Conditions)
	}
	if cpu := n.Status.Allocatable[v1.ResourceCPU]; cpu.MilliValue() != 2000 {
		t.Errorf("allocatable cpu %s, want 2", cpu.String())
	}
	if len(n.Spec.Taints) != 2 {
		t.Errorf("taints %v: the status write dropped the controller's taint or the broker's", n.Spec.Taints)
	}
	if _, err := client.CoordinationV1().Leases(leaseNamespace).Get(context.Background(), "h1", metav1.GetOptions{}); err != nil {
		t.Errorf("the Node's Lease: %v", err)
	}
}

// apiServerLike is a fake clientset that, as the API server, keeps
// resourceVersions of Nodes and Leases and refuses an update of a stale
// one. With controllerTaints, the node lifecycle controller writes every
// new Node right after its creation.
func apiServerLike(t *testing.T, controllerTaints bool) *fake.Clientset {
	t.Helper()
	client := fake.NewSimpleClientset()
	tracker := client.Tracker()
	rv := 0
	nextRV := func(o metav1.Object) { rv++; o.SetResourceVersion(strconv.Itoa(rv)) }
	for _, res := range []string{"nodes", "leases"} {
		gvr := v1.SchemeGroupVersion.WithResource(res)
		if res == "leases" {
			gvr = coordinationv1.SchemeGroupVersion.WithResource(res)
		}
		client.PrependReactor("create", res, func(action k8stesting.Action) (bool, runtime.Object, error) {
			created := action.(k8stesting.CreateAction).GetObject().DeepCopyObject()
			meta := created.(metav1.Object)
			nextRV(meta)
			if ca, ok := action.(k8stesting.CreateActionImpl); ok {
				trackFields(meta, nil, ca.CreateOptions.FieldManager)
			}
			if err := tracker.Create(gvr, created, meta.GetNamespace()); err != nil {
				return true, nil, err
			}
			if n, ok := created.(*v1.Node); ok && controllerTaints {
				tainted := n.DeepCopy()
				tainted.Spec.Taints = append(tainted.Spec.Taints, v1.Taint{Key: v1.TaintNodeNotReady, Effect: v1.TaintEffectNoSchedule})
				nextRV(tainted)
				if err := tracker.Update(gvr, tainted, ""); err != nil {
					return true, nil, err
				}
			}
			return true, created, nil
		})
		client.PrependReactor("update", res, func(action k8stesting.Action) (bool, runtime.Object, error) {
			obj := action.(k8stesting.UpdateAction).GetObject().DeepCopyObject()
			meta := obj.(metav1.Object)
			stored, err := tracker.Get(gvr, meta.GetNamespace(), meta.GetName())
			if err != nil {
				return true, nil, err
			}
			if meta.GetResourceVersion() != stored.(metav1.Object).GetResourceVersion() {
				return true, nil, apierrors.NewConflict(gvr.GroupResource(), meta.GetName(), errors.New("the object has been modified"))
			}
			nextRV(meta)
			if ua, ok := action.(k8stesting.UpdateActionImpl); ok {
				trackFields(meta, stored.(metav1.Object), ua.UpdateOptions.FieldManager)
			}
			return true, obj, tracker.Update(gvr, obj, meta.GetNamespace())
		})
	}
	return client
}

// trackFields keeps managed fields as the API server does, roughly: a write
// that carries none keeps the stored object's, and its field manager gets an
// entry of its own (here: for renewTime, what the mirror reads of them).
func trackFields(obj, stored metav1.Object, manager string) {
	if len(obj.GetManagedFields()) == 0 && stored != nil {
		obj.SetManagedFields(stored.GetManagedFields())
	}
	if manager == "" {
		return
	}
	for _, mf := range obj.GetManagedFields() {
		if mf.Manager == manager {
			return
		}
	}
	obj.SetManagedFields(append(obj.GetManagedFields(), metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:renewTime":{}}}`)}}))
}

// startedMirror is a mirror whose Node informer runs, as in the broker.
func startedMirror(t *testing.T, client *fake.Clientset) (*Mirror, context.Context) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m := New(Config{Client: client, Cache: offers.New(offers.Config{})})
	m.startNodes(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), m.cfg.Nodes.Informer().HasSynced) {
		t.Fatal("node informer did not sync")
	}
	return m, ctx
}

// waitCached waits until the mirror's informer holds node name in a state
// cond accepts.
func waitCached(t *testing.T, m *Mirror, name string, cond func(*v1.Node) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		n, err := m.cfg.Nodes.Lister().Get(name)
		return err == nil && cond(n), nil
	})
	if err != nil {
		t.Fatalf("the informer never saw the expected Node %s: %v", name, err)
	}
}

func readyIs(status v1.ConditionStatus, reason string) func(*v1.Node) bool {
	return func(n *v1.Node) bool {
		for _, c := range n.Status.Conditions {
			if c.Type == v1.NodeReady {
				return c.Status == status && c.Reason == reason
			}
		}
		return false
	}
}

// writes lists the create/update calls the client got, as "verb resource[/subresource]".
func writes(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		if a.GetVerb() == "create" || a.GetVerb() == "update" || a.GetVerb() == "patch" {
			w := a.GetVerb() + " " + a.GetResource().Resource
			if a.GetSubresource() != "" {
				w += "/" + a.GetSubresource()
			}
			out = append(out, w)
		}
	}
	return out
}

// TestHeartbeatIsOneLeaseRenewal: once an agent's Node is Ready, keeping it
// so costs one request per sync, the Lease renewal a kubelet would make;
// the Node is neither read from the API server nor written. This is what
// lets one broker keep thousands of agents' Nodes Ready.
func TestHeartbeatIsOneLeaseRenewal(t *testing.T) {
	client := apiServerLike(t, false)
	m, ctx := startedMirror(t, client)
	a := &agentState{id: "S1", hostname: "h1", capacity: podresources.Resources{Scalars: podresources.Scalars{CPUs: 2000, MemMB: 1024000}}}
	if err := m.sync(ctx, a); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	waitCached(t, m, "h1", readyIs(v1.ConditionTrue, ReasonAgentActive))
	before, err := client.CoordinationV1().Leases(leaseNamespace).Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client.ClearActions()
	if err := m.sync(ctx, a); err != nil {
		t.Fatalf("second sync: %v", err)
	}
	if got := client.Actions(); len(got) != 1 || got[0].GetVerb() != "update" || got[0].GetResource().Resource != "leases" {
		var names []string
		for _, a := range got {
			names = append(names, a.GetVerb()+" "+a.GetResource().Resource+"/"+a.GetSubresource())
		}
		t.Errorf("requests of a steady-state sync: %v, want one Lease update", names)
	}
	after, err := client.CoordinationV1().Leases(leaseNamespace).Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion == before.ResourceVersion || ptr.Deref(after.Spec.HolderIdentity, "") != LeaseHolder {
		t.Errorf("Lease after the second sync: rv %s→%s holder %q, want renewed by %s", before.ResourceVersion, after.ResourceVersion, ptr.Deref(after.Spec.HolderIdentity, ""), LeaseHolder)
	}
}

// TestKubeletTakesOver: when the executor's kubelet renews the Lease the
// broker created (it keeps the holder and writes renewTime), the broker
// notices at its next renewal and stops writing the Lease and the status.
func TestKubeletTakesOver(t *testing.T) {
	client := apiServerLike(t, false)
	m, ctx := startedMirror(t, client)
	a := &agentState{id: "S1", hostname: "h1"}
	if err := m.sync(ctx, a); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	// The kubelet: renews the Lease (as its lease controller does) and
	// reports its own Ready condition.
	l, err := client.CoordinationV1().Leases(leaseNamespace).Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l.Spec.RenewTime = ptr.To(metav1.NewMicroTime(time.Now()))
	l.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "k8sm-executor", Operation: metav1.ManagedFieldsOperationUpdate,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:renewTime":{}}}`)}}}
	if l, err = client.CoordinationV1().Leases(leaseNamespace).Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := client.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady"}}
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitCached(t, m, "h1", readyIs(v1.ConditionTrue, "KubeletReady"))

	client.ClearActions()
	for i := range 2 {
		if err := m.sync(ctx, a); err != nil {
			t.Fatalf("sync %d after the kubelet started: %v", i, err)
		}
	}
	for _, w := range writes(client) {
		if w != "update leases" { // the renewal that found the conflict
			t.Errorf("the broker wrote %q to a Node its kubelet runs", w)
		}
	}
	got, err := client.CoordinationV1().Leases(leaseNamespace).Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != l.ResourceVersion {
		t.Errorf("the broker renewed the kubelet's Lease (rv %s, the kubelet wrote %s)", got.ResourceVersion, l.ResourceVersion)
	}
	if ok, err := m.KubeletRuns(ctx, "h1"); err != nil || !ok {
		t.Errorf("KubeletRuns = %v, %v; want true", ok, err)
	}
}

// TestNodeMarkedUnknownIsPutRight: if the node lifecycle controller marks
// the Node Unknown (the broker missed its Lease, e.g. while it failed
// over), the informer's event queues the agent and one sync makes the Node
// Ready again, without waiting for the next status report.
func TestNodeMarkedUnknownIsPutRight(t *testing.T) {
	client := apiServerLike(t, false)
	m, ctx := startedMirror(t, client)
	m.AgentOffered(ctx, &mesos.Offer{AgentID: mesos.AgentID{Value: "S1"}, Hostname: "h1"})
	if n := m.queue.Len(); n != 1 {
		t.Fatalf("%d agents queued after a new agent's offer, want 1", n)
	}
	m.next(ctx)
	waitCached(t, m, "h1", readyIs(v1.ConditionTrue, ReasonAgentActive))

	n, err := client.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Status.Conditions[0].Status, n.Status.Conditions[0].Reason = v1.ConditionUnknown, "NodeStatusUnknown"
	if _, err := client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return m.queue.Len() == 1, nil
	}); err != nil {
		t.Fatal("the Node marked Unknown did not queue its agent")
	}
	m.next(ctx)
	got, err := client.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !readyIs(v1.ConditionTrue, ReasonAgentActive)(got) {
		t.Errorf("Node conditions after the sync: %v, want Ready by the broker", got.Status.Conditions)
	}
}

// TestRunMirrorsManyAgents: Run keeps many agents' Nodes Ready with its
// workers, and a lost agent's Node goes NotReady.
func TestRunMirrorsManyAgents(t *testing.T) {
	client := apiServerLike(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := New(Config{Client: client, Cache: offers.New(offers.Config{}), Workers: 4})
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	// The fake's watch holds at most 100 undelivered events and panics
	// beyond; 25 agents make about 80 Node events in all.
	const agents = 25
	for i := range agents {
		m.AgentOffered(ctx, &mesos.Offer{AgentID: mesos.AgentID{Value: fmt.Sprintf("S%d", i)}, Hostname: fmt.Sprintf("h%d", i)})
	}
	allIn := func(lost string) error {
		return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			list, err := m.cfg.Nodes.Lister().List(labels.Everything())
			if err != nil || len(list) != agents {
				return false, err
			}
			for _, n := range list {
				want := readyIs(v1.ConditionTrue, ReasonAgentActive)
				if n.Name == lost {
					want = readyIs(v1.ConditionFalse, ReasonAgentLost)
				}
				if !want(n) {
					return false, nil
				}
			}
			return true, nil
		})
	}
	if err := allIn(""); err != nil {
		t.Fatalf("not every agent's Node became Ready: %v", err)
	}
	m.AgentLost(ctx, "S7")
	if err := allIn("h7"); err != nil {
		t.Errorf("the lost agent's Node did not go NotReady, or another Node changed: %v", err)
	}
	cancel()
	<-done
}

// TestWritesKeepWhatTheCacheDrops: the informer keeps only what the broker
// reads, and the broker's writes are patches of what it owns, so what a
// kubelet or a controller wrote on the Node (images, addresses, node info,
// other conditions, the pod CIDR, taints) survives a metadata and a status
// write made from the lean cached copy.
func TestWritesKeepWhatTheCacheDrops(t *testing.T) {
	client := apiServerLike(t, false)
	full := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "h1", Labels: map[string]string{OwnerLabel: Owner, "kubelet-label": "x"}},
		Spec: v1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"},
			Taints: []v1.Taint{{Key: "other", Value: "v", Effect: v1.TaintEffectNoSchedule}}},
		Status: v1.NodeStatus{
			Conditions: []v1.NodeCondition{
				{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
				{Type: v1.NodeReady, Status: v1.ConditionFalse, Reason: "Whatever"},
			},
			Addresses: []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "10.0.0.1"}},
			NodeInfo:  v1.NodeSystemInfo{KubeletVersion: "v1.37.2"},
			Images:    []v1.ContainerImage{{Names: []string{"webapp:latest"}, SizeBytes: 1 << 20}},
			Capacity:  v1.ResourceList{v1.ResourcePods: resource.MustParse("110"), "example.com/gone": resource.MustParse("1")},
		},
	}
	if _, err := client.CoreV1().Nodes().Create(context.Background(), full, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, ctx := startedMirror(t, client)
	cached, err := m.cfg.Nodes.Lister().Get("h1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cached.Status.Images) != 0 || len(cached.Status.Addresses) != 0 || cached.Spec.PodCIDR != "" || len(cached.Status.Conditions) != 1 {
		t.Errorf("the informer keeps more than the broker reads: %+v", cached)
	}
	a := &agentState{id: "S1", hostname: "h1", attributes: map[string]string{"k8sm.io/attribute-rack": "r1"},
		capacity: podresources.Resources{Scalars: podresources.Scalars{CPUs: 2000, MemMB: 1024}}}
	if err := m.sync(ctx, a); err != nil {
		t.Fatalf("sync: %v", err)
	}
	got, err := client.CoreV1().Nodes().Get(ctx, "h1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Annotations[taskinfo.AgentIDAnnotation] != "S1" || got.Labels["k8sm.io/attribute-rack"] != "r1" || got.Labels["kubelet-label"] != "x" {
		t.Errorf("labels %v annotations %v: want the broker's added, the kubelet's kept", got.Labels, got.Annotations)
	}
	if len(got.Spec.Taints) != 2 || got.Spec.PodCIDR != "10.244.1.0/24" || len(got.Spec.PodCIDRs) != 1 {
		t.Errorf("spec %+v: want the other taint, the agent taint and the pod CIDR", got.Spec)
	}
	if len(got.Status.Images) != 1 || len(got.Status.Addresses) != 1 || got.Status.NodeInfo.KubeletVersion != "v1.37.2" {
		t.Errorf("status lost what the cache drops: images %v addresses %v nodeInfo %+v", got.Status.Images, got.Status.Addresses, got.Status.NodeInfo)
	}
	if !readyIs(v1.ConditionTrue, ReasonAgentActive)(got) || len(got.Status.Conditions) != 2 {
		t.Errorf("conditions %+v: want Ready from the broker and MemoryPressure kept", got.Status.Conditions)
	}
	if _, ok := got.Status.Capacity["example.com/gone"]; ok || got.Status.Capacity.Cpu().MilliValue() != 2000 {
		t.Errorf("capacity %v: want the agent's, without what it no longer offers", got.Status.Capacity)
	}
}

// listedAgents is the master's agent list.
type listedAgents []master.Response_GetAgents_Agent

func (l listedAgents) Agents(context.Context) ([]master.Response_GetAgents_Agent, error) {
	return l, nil
}

// TestAgentListedWithoutOffer: an agent that joins while the framework
// SUPPRESSes offers is never offered, but the master lists it: it gets its
// Node, Ready, with its attributes and the capacity of its unreserved
// resources; an inactive one gets none.
func TestAgentListedWithoutOffer(t *testing.T) {
	client := apiServerLike(t, true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	res, err := mesossim.ParseResources("cpus:2;mem:1024;disk:2048")
	if err != nil {
		t.Fatal(err)
	}
	agent := func(id, host string, active bool) master.Response_GetAgents_Agent {
		return master.Response_GetAgents_Agent{Active: active, AgentInfo: mesos.AgentInfo{ID: &mesos.AgentID{Value: id}, Hostname: host, Resources: res,
			Attributes: []mesos.Attribute{{Name: "zone", Type: mesos.TEXT, Text: &mesos.Value_Text{Value: "c"}}}}}
	}
	m := New(Config{Client: client, Cache: offers.New(offers.Config{}), Workers: 2, AgentListInterval: 50 * time.Millisecond,
		Agents: listedAgents{agent("S3", "joiner", true), agent("S4", "gone", false)}})
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	var n *v1.Node
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		n, err = m.cfg.Nodes.Lister().Get("joiner")
		return err == nil && readyIs(v1.ConditionTrue, ReasonAgentActive)(n), nil
	}); err != nil {
		t.Fatalf("no Ready Node for the listed agent: %v", err)
	}
	cpu := n.Status.Capacity[v1.ResourceCPU]
	if n.Labels[taskinfo.AttributeLabelPrefix+"zone"] != "c" || cpu.MilliValue() != 2000 {
		t.Errorf("the listed agent's Node has labels %v, cpu capacity %s; want zone c, 2 cpus", n.Labels, cpu.String())
	}
	if _, err := m.cfg.Nodes.Lister().Get("gone"); !apierrors.IsNotFound(err) {
		t.Errorf("an inactive agent got a Node (%v)", err)
	}
	cancel()
	<-done
}
