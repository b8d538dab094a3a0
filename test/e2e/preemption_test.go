//go:build e2e

package e2e

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// priorityClass creates a PriorityClass named after the namespace (they are
// cluster-wide) and deletes it after the test.
func (e *k8smEnv) priorityClass(t *testing.T, ns, name string, value int32, mutate ...func(*schedulingv1.PriorityClass)) string {
	t.Helper()
	pc := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name}, Value: value}
	for _, m := range mutate {
		m(pc)
	}
	if _, err := e.cs.SchedulingV1().PriorityClasses().Create(e.ctx, pc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating PriorityClass %s: %v", pc.Name, err)
	}
	t.Cleanup(func() { _ = e.cs.SchedulingV1().PriorityClasses().Delete(e.ctx, pc.Name, metav1.DeleteOptions{}) })
	return pc.Name
}

// halfAgent is the cpus that make two pods take all an agent offers (its
// cpus less the executor's charge), so that a third pod fits nowhere.
func (e *k8smEnv) halfAgent(t *testing.T) float64 {
	cpus := math.Inf(1)
	for _, a := range e.agents(t) {
		cpus = min(cpus, a.res.CPUs)
	}
	return math.Floor((cpus-e.opts.Executor.CPUs)/2*1000) / 1000
}

// fill runs a Deployment of replicas pods of the given cpus and priority
// class and returns them running.
func (e *k8smEnv) fill(t *testing.T, ns, name string, replicas int32, cpus float64, class string) []corev1.Pod {
	t.Helper()
	e.createDeployment(t, ns, name, replicas, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.PriorityClassName = class
		d.Spec.Template.Spec.Containers[0].Resources.Requests = requests(cpus, 32)
	})
	return e.waitRunning(t, ns, "app="+name, int(replicas), 2*time.Minute)
}

// preempted returns the pods of before that are gone or being deleted.
func (e *k8smEnv) preempted(t *testing.T, ns string, before []corev1.Pod) []corev1.Pod {
	t.Helper()
	var gone []corev1.Pod
	for _, p := range before {
		cur, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, p.Name, metav1.GetOptions{})
		if err == nil && cur.UID == p.UID && cur.DeletionTimestamp == nil {
			continue
		}
		gone = append(gone, p)
	}
	return gone
}

// preemption: two agents full of low-priority pods; a
// high-priority pod the offers cannot hold preempts one of them, is
// nominated to its agent, and runs there once the victim's task ended and
// Mesos offered its resources again — before the ReplicaSet's replacement
// of the victim, a pod of low priority that waits for the same resources.
func (e *k8smEnv) preemption(t *testing.T, ns string) {
	low := e.priorityClass(t, ns, "low", 10)
	high := e.priorityClass(t, ns, "high", 1000)
	cpus := e.halfAgent(t)
	lows := e.fill(t, ns, "low", 4, cpus, low)

	e.createPod(t, ns, "high", func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "high"}
		p.Spec.PriorityClassName = high
		p.Spec.Containers[0].Resources.Requests = requests(cpus, 32)
	})
	run := e.waitRunning(t, ns, "app=high", 1, 2*time.Minute)[0]

	gone := e.preempted(t, ns, lows)
	if len(gone) != 1 {
		t.Fatalf("%d low-priority pods were preempted for one pod that needs one's room: %v", len(gone), names(gone))
	}
	if gone[0].Spec.NodeName != run.Spec.NodeName {
		t.Errorf("the victim ran on %s, the preemptor runs on %s", gone[0].Spec.NodeName, run.Spec.NodeName)
	}
	e.waitTasksEnded(t, []types.UID{gone[0].UID}, "TASK_KILLED", time.Minute)
	// The replacement of the victim waits: the offers hold three such pods.
	e.eventually(t, time.Minute, "the victim's replacement to be created and wait", func() (bool, string) {
		var pending, running []string
		for _, p := range e.pods(t, ns, "app=low") {
			switch {
			case p.DeletionTimestamp != nil:
			case p.Spec.NodeName == "":
				pending = append(pending, p.Name)
			default:
				running = append(running, p.Name)
			}
		}
		return len(pending) == 1 && len(running) == 3, fmt.Sprintf("pending %v, bound %v", pending, running)
	})
	if !slices.ContainsFunc(e.events(t, ns, gone[0].Name), func(ev string) bool { return strings.Contains(ev, "Preempted") }) {
		t.Errorf("pod %s has no Preempted event: %v", gone[0].Name, e.events(t, ns, gone[0].Name))
	}
}

// pdbSteersPreemption: the same full agents, half of the low-priority pods
// guarded by a PodDisruptionBudget that allows no disruption, and those
// started last (without the budget they would be the victims: the stock
// preemption spares the pods that started first). The high-priority pod
// preempts an unguarded pod and every guarded pod runs on.
func (e *k8smEnv) pdbSteersPreemption(t *testing.T, ns string) {
	low := e.priorityClass(t, ns, "low", 10)
	high := e.priorityClass(t, ns, "high", 1000)
	cpus := e.halfAgent(t)
	free := e.fill(t, ns, "free", 2, cpus, low)
	minAvailable := intstr.FromInt32(2)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "guarded"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvailable,
			Selector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": "guarded"}},
		},
	}
	if _, err := e.cs.PolicyV1().PodDisruptionBudgets(ns).Create(e.ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the PodDisruptionBudget: %v", err)
	}
	guarded := e.fill(t, ns, "guarded", 2, cpus, low)
	e.eventually(t, time.Minute, "the budget to count its pods", func() (bool, string) {
		b, err := e.cs.PolicyV1().PodDisruptionBudgets(ns).Get(e.ctx, "guarded", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return b.Status.ObservedGeneration >= b.Generation && b.Status.CurrentHealthy == 2 && b.Status.DisruptionsAllowed == 0, fmt.Sprintf("%+v", b.Status)
	})

	e.createPod(t, ns, "high", func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "high"}
		p.Spec.PriorityClassName = high
		p.Spec.Containers[0].Resources.Requests = requests(cpus, 32)
	})
	run := e.waitRunning(t, ns, "app=high", 1, 2*time.Minute)[0]
	if gone := e.preempted(t, ns, guarded); len(gone) > 0 {
		t.Errorf("pods %v the budget guards were preempted", names(gone))
	}
	gone := e.preempted(t, ns, free)
	if len(gone) != 1 || gone[0].Spec.NodeName != run.Spec.NodeName {
		t.Errorf("preempted unguarded pods %v, want one on %s", names(gone), run.Spec.NodeName)
	}
}

func names(ps []corev1.Pod) []string {
	out := make([]string, len(ps))
	for i := range ps {
		out[i] = ps[i].Name + " on " + ps[i].Spec.NodeName
	}
	return out
}

// priorityOrder: on full agents a low-priority pod waits, then a
// high-priority pod that may not preempt (its PriorityClass's
// preemptionPolicy is Never); when the
// room of one such pod is freed (the low Deployment scaled down), the
// high-priority pod gets it, though the other waited longer.
func (e *k8smEnv) priorityOrder(t *testing.T, ns string) {
	low := e.priorityClass(t, ns, "low", 10)
	never := corev1.PreemptNever
	high := e.priorityClass(t, ns, "high", 1000, func(pc *schedulingv1.PriorityClass) { pc.PreemptionPolicy = &never })
	cpus := e.halfAgent(t)
	e.fill(t, ns, "low", 4, cpus, low)

	waiting := func(name, class string) {
		e.createPod(t, ns, name, func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": name}
			p.Spec.PriorityClassName = class
			p.Spec.Containers[0].Resources.Requests = requests(cpus, 32)
		})
		e.eventually(t, time.Minute, name+" to be turned away for want of offers", func() (bool, string) {
			evs := e.events(t, ns, name)
			return slices.ContainsFunc(evs, func(ev string) bool { return strings.HasPrefix(ev, "FailedScheduling:") }), fmt.Sprint(evs)
		})
	}
	waiting("first-low", low)
	waiting("then-high", high)

	e.scale(t, ns, "low", 3)
	run := e.waitRunning(t, ns, "app=then-high", 1, 2*time.Minute)[0]
	p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, "first-low", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" {
		t.Errorf("first-low was placed on %s; the room of one pod went to it, not to then-high (on %s)", p.Spec.NodeName, run.Spec.NodeName)
	}
	if n := len(e.waitRunning(t, ns, "app=low", 3, time.Minute)); n != 3 {
		t.Errorf("%d low pods run, want 3: then-high preempted none", n)
	}
}
