//go:build integration

package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/hack/cluster"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// TestMesosScheduler runs the k8sm kube-scheduler with the shipped
// mesos-scheduler profile against a real API server and the real broker API
// fed with synthetic offers, and checks what a user sees: where pods are
// bound, and the FailedScheduling messages of those that are not.
func TestMesosScheduler(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cfg, err := cluster.TestConfig(filepath.Join(t.TempDir(), "state"), binDir(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Containerd = false // no pod runs here: the broker's Mesos side is a stand-in
	cfg.Agents = 0         // nor the local cluster's Mesos side, broker and scheduler
	cl, err := cluster.Up(ctx, cfg)
	t.Cleanup(func() { _ = cluster.Down(context.Background(), cfg.StateDir) })
	if err != nil {
		t.Fatalf("bringing the cluster up: %v", err)
	}
	cs, err := cl.Client()
	if err != nil {
		t.Fatal(err)
	}

	// The shipped RBAC, granted also to the local cluster's scheduler user.
	kubectl(t, cfg, "apply", "-f", "../../manifests/rbac.yaml")
	kubectl(t, cfg, "create", "clusterrolebinding", "k8sm-scheduler-user", "--clusterrole=k8sm-scheduler", "--user=system:kube-scheduler")
	kubectl(t, cfg, "-n", "kube-system", "create", "rolebinding", "k8sm-scheduler-user", "--role=k8sm-scheduler", "--user=system:kube-scheduler")

	b := startTestBroker(t, "127.0.0.1:0")
	web := podresources.Range{Begin: 31080, End: 31080}
	others := podresources.Range{Begin: 31000, End: 31010}
	// agent-1 fits; agent-2 is short of cpus; agent-3 is in the wrong rack;
	// agent-4 does not offer the host port.
	b.offer("a1", "agent-1", 2, 4096, others, web)
	b.offer("a2", "agent-2", 0.5, 4096, others, web)
	b.offer("a3", "agent-3", 4, 4096, others, web)
	b.offer("a4", "agent-4", 4, 4096, podresources.Range{Begin: 32000, End: 32100})
	for i, rack := range []string{"r1", "r1", "r2", "r1"} {
		createAgentNode(ctx, t, cs, fmt.Sprintf("agent-%d", i+1), map[string]string{"rack": rack})
	}
	waitNodesSchedulable(ctx, t, cs, 4)

	config := schedulerConfig(t, b.addr, cfg.PKI().Kubeconfig("scheduler"), nil)
	startScheduler(ctx, t, "--config="+config, "--v=2")

	t.Run("deployment is placed only where offers fit", func(t *testing.T) {
		createWebDeployment(ctx, t, cs, 2)
		var bound, pending []corev1.Pod
		waitPods(ctx, t, cs, "app=web", func(pods []corev1.Pod) bool {
			bound, pending = split(pods)
			return len(pods) == 2 && len(bound) == 1 && hasFailedScheduling(ctx, cs, pending)
		})
		if bound[0].Spec.NodeName != "agent-1" {
			t.Errorf("web pod bound to %s, want agent-1 (the only r1 agent with 1 cpu and port 31080 offered)", bound[0].Spec.NodeName)
		}
		msg := failedScheduling(ctx, t, cs, pending[0])
		t.Logf("FailedScheduling of %s: %s", pending[0].Name, msg)
		for _, want := range []string{
			"0/4 nodes are available",
			"1 mesos: not enough cpus offered (1 requested)",
			"mesos: host ports [31080-31080] not offered",
			"1 node(s) didn't match Pod's node affinity/selector",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("FailedScheduling of %s says %q; want it to contain %q", pending[0].Name, msg, want)
			}
		}
		select {
		case p := <-b.launcher.pods:
			if p.Name != bound[0].Name || p.Spec.NodeName != "agent-1" {
				t.Errorf("launched %s for %s, want %s on agent-1", p.Name, p.Spec.NodeName, bound[0].Name)
			}
		default:
			t.Error("the bound pod was never launched through the broker")
		}
	})

	t.Run("a waiting pod is bound when a fitting offer arrives", func(t *testing.T) {
		// Nothing in the cluster changes; only Mesos offers the port. The
		// scheduler's periodic flush of unschedulable pods comes after 5
		// minutes, so a pod bound well within that was activated by the offer.
		start := time.Now()
		b.offer("a4", "agent-4", 0, 0, web)
		var bound []corev1.Pod
		err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, err
			}
			bound, _ = split(l.Items)
			return len(bound) == 2, nil
		})
		if err != nil {
			t.Fatalf("the waiting web pod was not bound after agent-4 offered port 31080: %v", err)
		}
		nodes := map[string]bool{bound[0].Spec.NodeName: true, bound[1].Spec.NodeName: true}
		if !nodes["agent-1"] || !nodes["agent-4"] {
			t.Errorf("web pods on %v, want agent-1 and agent-4", nodes)
		}
		t.Logf("bound %v after the offer", time.Since(start))
	})

	t.Run("an unplaceable pod says which resource is short", func(t *testing.T) {
		pod := mesosPod("huge", "16")
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var msg string
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			msg = eventMessage(ctx, cs, "huge")
			return msg != "", nil
		})
		t.Logf("FailedScheduling of huge: %s", msg)
		want := "0/4 nodes are available: mesos: the pod fits no agent: at most 4 cpus offered, 16 requested."
		if !strings.Contains(msg, want) {
			t.Errorf("FailedScheduling says %q, want %q", msg, want)
		}
		pod, err := cs.CoreV1().Pods("default").Get(ctx, "huge", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName != "" {
			t.Errorf("huge pod bound to %s", pod.Spec.NodeName)
		}
	})

	t.Run("wildcard host ports are chosen from the offer and recorded", func(t *testing.T) {
		pod := mesosPod("wildcard", "250m")
		pod.Annotations = map[string]string{taskinfo.WildcardPortsAnnotation: "true"}
		pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var got *corev1.Pod
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods("default").Get(ctx, "wildcard", metav1.GetOptions{})
			got = p
			return err == nil && p.Spec.NodeName != "", err
		})
		if err != nil {
			t.Fatalf("wildcard pod not bound: %v (%s)", err, eventMessage(ctx, cs, "wildcard"))
		}
		as, err := podresources.PortAssignmentsOf(got)
		if err != nil || len(as) != 1 || as[0].ContainerPort != 8080 || !podresources.NewRanges(others, web).Contains(uint64(as[0].HostPort)) {
			t.Errorf("pod on %s records host ports %+v (%v), want 8080 on an offered port", got.Spec.NodeName, as, err)
		}
	})

	t.Run("broker unreachable, then back", func(t *testing.T) {
		addr := b.addr
		b.g.Stop()
		pod := mesosPod("after-outage", "500m")
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// A cycle that raced the watch noticing the outage fails in Reserve
		// instead ("the k8sm broker is unreachable"); the retries that
		// follow must say that there is no offer view.
		want := "mesos: no offer view from the k8sm broker " + addr
		var msg string
		_ = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			msg = eventMessage(ctx, cs, "after-outage")
			return strings.Contains(msg, want), nil
		})
		t.Logf("FailedScheduling while the broker is down: %s", msg)
		if !strings.Contains(msg, want) {
			t.Errorf("FailedScheduling while the broker is down says %q, want it to contain %q", msg, want)
		}
		nb := startTestBroker(t, addr)
		nb.offer("a3", "agent-3", 4, 4096)
		err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods("default").Get(ctx, "after-outage", metav1.GetOptions{})
			return err == nil && p.Spec.NodeName != "", err
		})
		if err != nil {
			t.Fatalf("the pod was not bound after the broker came back: %v", err)
		}
	})
}

func mesosPod(name, cpu string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{
			SchedulerName: "mesos-scheduler",
			Containers: []corev1.Container{{
				Name: "c", Image: cluster.WebappImage,
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("64Mi")}},
			}},
		},
	}
}

func createWebDeployment(ctx context.Context, t *testing.T, cs kubernetes.Interface, replicas int32) {
	t.Helper()
	labels := map[string]string{"app": "web"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					SchedulerName: "mesos-scheduler",
					NodeSelector:  map[string]string{"k8sm.io/attribute-rack": "r1"},
					Containers: []corev1.Container{{
						Name: "web", Image: cluster.WebappImage,
						Ports:     []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 31080}},
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")}},
					}},
				},
			},
		},
	}
	if _, err := cs.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func split(pods []corev1.Pod) (bound, pending []corev1.Pod) {
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			bound = append(bound, p)
		} else {
			pending = append(pending, p)
		}
	}
	return bound, pending
}

func waitPods(ctx context.Context, t *testing.T, cs kubernetes.Interface, selector string, done func([]corev1.Pod) bool) {
	t.Helper()
	var last []corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, err
		}
		last = l.Items
		return done(l.Items), nil
	})
	if err != nil {
		for _, p := range last {
			t.Logf("pod %s node %q: %s", p.Name, p.Spec.NodeName, eventMessage(ctx, cs, p.Name))
		}
		t.Fatalf("waiting for pods %s: %v", selector, err)
	}
}

func hasFailedScheduling(ctx context.Context, cs kubernetes.Interface, pods []corev1.Pod) bool {
	return len(pods) == 1 && eventMessage(ctx, cs, pods[0].Name) != ""
}

// eventMessage is the newest FailedScheduling message of a pod, as
// `kubectl describe pod` shows it.
func eventMessage(ctx context.Context, cs kubernetes.Interface, pod string) string {
	l, err := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: fields.Set{"involvedObject.name": pod, "reason": "FailedScheduling"}.String()})
	if err != nil || len(l.Items) == 0 {
		return ""
	}
	newest := l.Items[0]
	for _, e := range l.Items[1:] {
		if e.LastTimestamp.After(newest.LastTimestamp.Time) || e.EventTime.After(newest.EventTime.Time) {
			newest = e
		}
	}
	return newest.Message
}

func failedScheduling(ctx context.Context, t *testing.T, cs kubernetes.Interface, pod corev1.Pod) string {
	t.Helper()
	msg := eventMessage(ctx, cs, pod.Name)
	if msg == "" {
		t.Fatalf("no FailedScheduling event for %s", pod.Name)
	}
	return msg
}

// waitNodesSchedulable waits until the node lifecycle controller has taken
// the not-ready taint it puts on new Nodes off all of them.
func waitNodesSchedulable(ctx context.Context, t *testing.T, cs kubernetes.Interface, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		ready := 0
		for _, node := range l.Items {
			clean := true
			for _, taint := range node.Spec.Taints {
				if strings.HasPrefix(taint.Key, "node.kubernetes.io/") {
					clean = false
				}
			}
			if clean {
				ready++
			}
		}
		return ready >= n, nil
	})
	if err != nil {
		t.Fatalf("nodes still carry node.kubernetes.io taints: %v", err)
	}
}
