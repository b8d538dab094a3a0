package mesosoffers

import (
	"context"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	clientsetfake "k8s.io/client-go/kubernetes/fake"
	kubeschedulerconfigv1 "k8s.io/kube-scheduler/config/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/apis/config"
	configv1 "k8s.io/kubernetes/pkg/scheduler/apis/config/v1"
	internalcache "k8s.io/kubernetes/pkg/scheduler/backend/cache"
	internalqueue "k8s.io/kubernetes/pkg/scheduler/backend/queue"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultbinder"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultpreemption"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/queuesort"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	tf "k8s.io/kubernetes/pkg/scheduler/testing/framework"
)

func withPriority(p *v1.Pod, prio int32, labels map[string]string) *v1.Pod {
	p.Spec.Priority = &prio
	p.Labels = labels
	return p
}

// dryRun runs the stock DefaultPreemption's dry run for pod over nodes
// holding pods, with MesosOffers as the profile's PreFilter and Filter, and
// returns the victims it picks by node.
func (e *env) dryRun(t *testing.T, pod *v1.Pod, nodes []string, pods []*v1.Pod, pdbs []*policyv1.PodDisruptionBudget) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ns []*v1.Node
	objs := []runtime.Object{pod}
	for _, n := range nodes {
		node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}
		ns = append(ns, node)
		objs = append(objs, node)
	}
	for _, p := range pods {
		objs = append(objs, p)
	}
	snapshot := internalcache.NewSnapshot(pods, ns)
	informerFactory := informers.NewSharedInformerFactory(clientsetfake.NewClientset(objs...), 0)
	f, err := tf.NewFramework(ctx, []tf.RegisterPluginFunc{
		tf.RegisterQueueSortPlugin(queuesort.Name, queuesort.New),
		tf.RegisterPluginAsExtensions(Name, func(context.Context, runtime.Object, fwk.Handle) (fwk.Plugin, error) { return e.pl, nil }, "PreFilter", "Filter"),
		tf.RegisterBindPlugin(defaultbinder.Name, defaultbinder.New),
	}, "",
		frameworkruntime.WithPodNominator(internalqueue.NewSchedulingQueue(nil, informerFactory)),
		frameworkruntime.WithSnapshotSharedLister(snapshot),
		frameworkruntime.WithMutableSnapshotLister(snapshot),
		frameworkruntime.WithInformerFactory(informerFactory),
	)
	if err != nil {
		t.Fatal(err)
	}
	v1args := &kubeschedulerconfigv1.DefaultPreemptionArgs{}
	configv1.SetDefaults_DefaultPreemptionArgs(v1args)
	args := &config.DefaultPreemptionArgs{}
	if err := configv1.Convert_v1_DefaultPreemptionArgs_To_config_DefaultPreemptionArgs(v1args, args, nil); err != nil {
		t.Fatal(err)
	}
	dp, err := defaultpreemption.New(ctx, args, f, feature.Features{})
	if err != nil {
		t.Fatal(err)
	}
	state := framework.NewCycleState()
	if _, st, _ := f.RunPreFilterPlugins(ctx, state, pod); !st.IsSuccess() {
		t.Fatalf("PreFilter: %v", st)
	}
	infos, err := snapshot.NodeInfos().List()
	if err != nil {
		t.Fatal(err)
	}
	candidates, _, err := dp.Evaluator.DryRunPreemption(ctx, state, pod, infos, pdbs, 0, int32(len(infos)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, c := range candidates {
		var victims []string
		for _, p := range c.Victims().Pods {
			victims = append(victims, p.Name)
		}
		slices.Sort(victims)
		out[c.Name()] = victims
	}
	return out
}

// The stock DefaultPreemption's dry run, with MesosOffers in the profile,
// finds the victim whose task frees the room on a full agent (before
// PreFilterExtensions it found none: removing a pod freed no offer), and
// prefers victims no PodDisruptionBudget guards.
func TestStockPreemptionFindsVictimsOnFullAgents(t *testing.T) {
	e := newEnv(t)
	e.fullAgent(t, "a1", "n1", res(4, 4096), res(0, 3072))
	e.fullAgent(t, "a2", "n2", res(4, 4096), res(0, 3072))
	low := func(name, node string, app string) *v1.Pod {
		p := withPriority(bound(mkPod("2", "256Mi"), node), 10, map[string]string{"app": app})
		p.Name = name
		return p
	}
	pods := []*v1.Pod{low("free-1", "n1", "free"), low("guarded-1", "n1", "guarded"), low("guarded-2", "n2", "guarded"), low("guarded-3", "n2", "guarded")}
	preemptor := withPriority(mkPod("2", "256Mi"), 1000, nil)

	got := e.dryRun(t, preemptor, []string{"n1", "n2"}, pods, nil)
	if len(got["n1"]) != 1 || len(got["n2"]) != 1 {
		t.Fatalf("victims %v, want one pod on each agent", got)
	}

	minAvailable := intstr.FromInt32(3)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "guarded"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvailable,
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}},
		},
		Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 0, CurrentHealthy: 3, DesiredHealthy: 3, ExpectedPods: 3},
	}
	got = e.dryRun(t, preemptor, []string{"n1", "n2"}, pods, []*policyv1.PodDisruptionBudget{pdb})
	if !slices.Equal(got["n1"], []string{"free-1"}) {
		t.Errorf("victims on n1 %v, want free-1: the budget allows no guarded pod to go", got["n1"])
	}
}
