//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/k8sm/k8sm/hack/cluster"
	"github.com/k8sm/k8sm/test/e2e/invariants"
)

// TestK8sm brings up one k8sm cluster (as `make up` does, on ports and a
// bridge of its own) and runs every end-to-end scenario on it, each in a
// namespace of its own and each followed by the invariant check.
func TestK8sm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	e := bringUp(t, ctx)

	e.test(t, "scale", e.scaleUpAndDown)
	e.test(t, "rolling-update", e.rollingUpdate)
	e.test(t, "host-ports", e.hostPorts)
	e.test(t, "pod-network", e.podNetwork)
	e.test(t, "services", e.services)
	e.test(t, "cluster-dns", e.clusterDNS)
	e.test(t, "service-rollout", e.serviceRollout)
	e.test(t, "host-private", e.hostPrivate)
	e.test(t, "attributes", e.attributeNodeSelector)
	e.test(t, "preemption", e.preemption)
	e.test(t, "pdb-steers-preemption", e.pdbSteersPreemption)
	e.test(t, "priority-order", e.priorityOrder)
	e.test(t, "affinity-spread", e.affinityAndSpread)
	e.test(t, "statefulset", e.statefulSet)
	e.test(t, "identity-waits-for-mesos", e.identityWaitsForMesos)
	e.test(t, "jobs", e.jobs)
	e.test(t, "oom-killed", e.oomKilled)
	e.test(t, "init-sidecar", e.initAndSidecar)
	e.test(t, "gates-suspend", e.gatesAndSuspend)
	e.test(t, "daemonset", e.daemonSet)
	e.test(t, "failing-container", e.failingContainer)
	e.test(t, "delete-during-launch", e.deleteDuringLaunch)
	e.test(t, "logs-exec", e.logsAndExec)
	e.test(t, "namespace-deletion", e.namespaceDeletion)
	e.test(t, "broker-restart", e.brokerRestart)
	e.test(t, "pending-until-agent-joins", e.pendingUntilAgentJoins)
	e.test(t, "agent-killed", e.agentKilled)
	e.test(t, "attacks", e.attacks)
	// The chaos suite's short form (make chaos runs the long one).
	e.test(t, "chaos", func(t *testing.T, ns string) {
		e.chaos(t, ns, chaosShort, 1, uint64(time.Now().UnixNano()))
	})
	// Last: an agent joins for good, then is marked gone for good.
	e.test(t, "daemonset-agent-joins", e.daemonSetFollowsAgents)
	e.test(t, "service-agent-gone", e.serviceAgentGone)
}

func uids(ps []corev1.Pod) []types.UID {
	out := make([]types.UID, len(ps))
	for i := range ps {
		out[i] = ps[i].UID
	}
	return out
}

func requests(cpus, memMB float64) corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(math.Round(cpus*1000)), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(int64(memMB)<<20, resource.BinarySI),
	}
}

// scaleUpAndDown: ten replicas get ten RUNNING tasks; at zero every task is
// KILLED and the agents' resources are offered again, so that pods needing
// every agent's whole room run.
func (e *k8smEnv) scaleUpAndDown(t *testing.T, ns string) {
	e.createDeployment(t, ns, "web", 0)
	e.scale(t, ns, "web", 10)
	pods := e.waitRunning(t, ns, "app=web", 10, 3*time.Minute)

	e.scale(t, ns, "web", 0)
	e.eventually(t, 2*time.Minute, "every pod of web to be gone", func() (bool, string) {
		ps := e.pods(t, ns, "app=web")
		return len(ps) == 0, fmt.Sprintf("%d pods left", len(ps))
	})
	e.waitTasksEnded(t, uids(pods), "TASK_KILLED", time.Minute)

	// Resources offered again: one pod per agent asking for all the agent
	// has besides the executor's charge fits only if every task's
	// resources went back to Mesos and were offered to k8sm again.
	ags := e.agents(t)
	cpus, mem := math.Inf(1), math.Inf(1)
	for _, a := range ags {
		cpus, mem = min(cpus, a.res.CPUs), min(mem, a.res.Mem)
	}
	cpus -= e.opts.Executor.CPUs
	mem -= e.opts.Executor.Mem
	e.createDeployment(t, ns, "whole", int32(len(ags)), func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Resources.Requests = requests(cpus, mem)
	})
	whole := e.waitRunning(t, ns, "app=whole", len(ags), time.Minute)
	if whole[0].Spec.NodeName == whole[1].Spec.NodeName {
		t.Errorf("two pods of a whole agent each run on %s", whole[0].Spec.NodeName)
	}
}

// rollingUpdate: every old task is killed, every new pod runs, and no pod
// ever has two tasks.
func (e *k8smEnv) rollingUpdate(t *testing.T, ns string) {
	one := intstr.FromInt32(1)
	zero := intstr.FromInt32(0)
	e.createDeployment(t, ns, "web", 4, func(d *appsv1.Deployment) {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &one, MaxUnavailable: &zero}}
	})
	old := e.waitRunning(t, ns, "app=web", 4, 2*time.Minute)
	oldUIDs := map[types.UID]bool{}
	for _, p := range old {
		oldUIDs[p.UID] = true
	}

	patch := `{"spec":{"template":{"metadata":{"annotations":{"e2e.k8sm.io/version":"2"}}}}}`
	if _, err := e.cs.AppsV1().Deployments(ns).Patch(e.ctx, "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatalf("updating the deployment: %v", err)
	}
	doubled := map[string]string{}
	e.eventually(t, 3*time.Minute, "the rollout to finish", func() (bool, string) {
		// Watch the tasks through the rollout, not only at its end.
		if st, err := e.masterState(); err == nil {
			for uid, ts := range tasksByUID(st) {
				if len(ts) > 1 {
					doubled[uid] = describeTasks(ts)
				}
			}
		}
		d, err := e.cs.AppsV1().Deployments(ns).Get(e.ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := d.Status
		done := s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == 4 && s.ReadyReplicas == 4 && s.Replicas == 4
		return done, fmt.Sprintf("%+v", s)
	})
	for uid, ts := range doubled {
		t.Errorf("pod %s had two tasks during the rollout: %s", uid, ts)
	}
	cur := e.waitRunning(t, ns, "app=web", 4, time.Minute)
	for _, p := range cur {
		if oldUIDs[p.UID] {
			t.Errorf("pod %s of the old template still runs after the rollout", p.Name)
		}
		if p.Annotations["e2e.k8sm.io/version"] != "2" {
			t.Errorf("pod %s runs without the new template's annotation", p.Name)
		}
	}
	e.waitTasksEnded(t, uids(old), "TASK_KILLED", time.Minute)
}

// hostPorts: every agent is a host of its own with the whole offered port
// range, so two pods with the same fixed host port run at once, one per
// agent; a wildcard port is chosen by k8sm from its agent's offered ports
// (recorded in k8sm.io/host-ports). Each answers HTTP at its node's address.
func (e *k8smEnv) hostPorts(t *testing.T, ns string) {
	ags := e.agents(t)
	var fixed uint64
	for p := range ags[0].res.Ports {
		fixed = max(fixed, p)
	}
	if fixed == 0 {
		t.Fatalf("agent %s offers no ports", ags[0].node)
	}
	for _, a := range ags[1:] {
		if _, ok := a.res.Ports[fixed]; !ok {
			t.Fatalf("agent %s does not offer port %d, which %s does: agents are hosts of their own, each with the whole range", a.node, fixed, ags[0].node)
		}
	}
	for _, name := range []string{"fixed-1", "fixed-2"} {
		e.createPod(t, ns, name, func(p *corev1.Pod) {
			p.Labels = map[string]string{"e2e": "fixed"}
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: int32(fixed)}}
		})
	}
	e.createPod(t, ns, "wild", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "wild"}
		p.Annotations = map[string]string{"k8sm.io/wildcard-ports": "true"}
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 8080}}
	})
	fps := e.waitRunning(t, ns, "e2e=fixed", 2, 2*time.Minute)
	if fps[0].Spec.NodeName == fps[1].Spec.NodeName {
		t.Errorf("both pods with host port %d run on %s", fixed, fps[0].Spec.NodeName)
	}
	wp := e.waitRunning(t, ns, "e2e=wild", 1, 2*time.Minute)[0]
	var as []struct {
		Container     string `json:"container"`
		ContainerPort int32  `json:"containerPort"`
		HostPort      int32  `json:"hostPort"`
	}
	if err := json.Unmarshal([]byte(wp.Annotations["k8sm.io/host-ports"]), &as); err != nil || len(as) != 1 {
		t.Fatalf("pod wild records its wildcard port as %q (%v), want one assignment", wp.Annotations["k8sm.io/host-ports"], err)
	}
	wild := uint64(as[0].HostPort)
	var wildAgent *agent
	for i := range ags {
		if ags[i].node == wp.Spec.NodeName {
			wildAgent = &ags[i]
		}
	}
	if wildAgent == nil {
		t.Fatalf("pod wild runs on %q, which is no agent", wp.Spec.NodeName)
	}
	if _, ok := wildAgent.res.Ports[wild]; !ok || as[0].ContainerPort != 8080 {
		t.Errorf("wildcard port %+v is not from %s's ports %s", as[0], wildAgent.node, wildAgent.res.Ports)
	}
	urls := map[string]string{wp.Name: fmt.Sprintf("http://%s:%d/", wp.Status.HostIP, wild)}
	for _, p := range fps {
		urls[p.Name] = fmt.Sprintf("http://%s:%d/", p.Status.HostIP, fixed)
	}
	for name, url := range urls {
		want := fmt.Sprintf("(pod %s/%s on node ", ns, name)
		var body string
		e.eventually(t, 30*time.Second, "pod "+name+" to answer on "+url, func() (bool, string) {
			b, err := httpGet(url)
			body = b
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(b, want), "answered " + b
		})
		t.Logf("%s answered: %s", url, strings.TrimSpace(body))
	}
}

// podNetwork: a pod on one agent reaches a pod on the other by its pod IP
// (the pod network spans the agents' hosts), with the client image's own
// HTTP client.
func (e *k8smEnv) podNetwork(t *testing.T, ns string) {
	ags := e.agents(t)
	onAgent := func(i int) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Labels = map[string]string{"e2e": p.Name}
			p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": ags[i].node}
		}
	}
	e.createPod(t, ns, "server", onAgent(1))
	e.createPod(t, ns, "client", onAgent(0))
	server := e.waitRunning(t, ns, "e2e=server", 1, 2*time.Minute)[0]
	client := e.waitRunning(t, ns, "e2e=client", 1, 2*time.Minute)[0]
	if server.Spec.NodeName == client.Spec.NodeName || server.Status.PodIP == "" {
		t.Fatalf("server on %s (IP %q), client on %s: want two agents", server.Spec.NodeName, server.Status.PodIP, client.Spec.NodeName)
	}
	url := fmt.Sprintf("http://%s:8080/", server.Status.PodIP)
	want := fmt.Sprintf("(pod %s/server on node %s)", ns, server.Spec.NodeName)
	e.eventually(t, 30*time.Second, "the client on "+client.Spec.NodeName+" to reach "+url, func() (bool, string) {
		out, err := e.kubectlErr("exec", "-n", ns, "client", "--", "/webapp", "get", url)
		return err == nil && strings.Contains(out, want), out
	})
	// The server sees the client's own address: nothing between them
	// rewrites it.
	e.eventually(t, 10*time.Second, "the server to log the client's pod IP", func() (bool, string) {
		out, err := e.kubectlErr("logs", "-n", ns, "server")
		return err == nil && strings.Contains(out, "from "+client.Status.PodIP+":"), out
	})
}

// attributeNodeSelector: the agents' attributes are node labels
// k8sm.io/attribute-<name>, and a nodeSelector on them places pods.
func (e *k8smEnv) attributeNodeSelector(t *testing.T, ns string) {
	ags := e.agents(t)
	labelsOf := map[string]map[string]string{}
	for _, a := range ags {
		n, err := e.cs.CoreV1().Nodes().Get(e.ctx, a.node, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("node of agent %s: %v", a.node, err)
		}
		labelsOf[a.node] = n.Labels
	}
	// An attribute whose value differs between every two agents.
	var key string
	for k := range labelsOf[ags[0].node] {
		if !strings.HasPrefix(k, "k8sm.io/attribute-") {
			continue
		}
		seen := map[string]bool{}
		for _, a := range ags {
			if v, ok := labelsOf[a.node][k]; ok {
				seen[v] = true
			}
		}
		if len(seen) == len(ags) {
			key = k
			break
		}
	}
	if key == "" {
		t.Fatalf("no k8sm.io/attribute-* label tells the agents apart: %v", labelsOf)
	}
	for _, a := range ags {
		for i := 0; i < 2; i++ {
			e.createPod(t, ns, fmt.Sprintf("on-%d-%d", a.index, i), func(p *corev1.Pod) {
				p.Labels = map[string]string{"e2e": "on-" + strconv.Itoa(a.index)}
				p.Spec.NodeSelector = map[string]string{key: labelsOf[a.node][key]}
			})
		}
	}
	e.createPod(t, ns, "nowhere", func(p *corev1.Pod) {
		p.Spec.NodeSelector = map[string]string{key: "no-agent-has-this"}
	})
	for _, a := range ags {
		for _, p := range e.waitRunning(t, ns, "e2e=on-"+strconv.Itoa(a.index), 2, 2*time.Minute) {
			if p.Spec.NodeName != a.node {
				t.Errorf("pod %s selects %s=%s but runs on %s", p.Name, key, labelsOf[a.node][key], p.Spec.NodeName)
			}
		}
	}
	p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, "nowhere", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending {
		t.Errorf("pod nowhere, selecting an attribute value no agent has, is %s on %q", p.Status.Phase, p.Spec.NodeName)
	}
}

// failingContainer: a container that exits 1 fails its task and its pod;
// a ReplicaSet's pod whose container cannot start fails its task, the pod
// becomes Failed, and the ReplicaSet replaces it.
func (e *k8smEnv) failingContainer(t *testing.T, ns string) {
	crash := e.createPod(t, ns, "crash", func(p *corev1.Pod) {
		p.Spec.Containers[0].Args = []string{"--exit-after=2s", "--exit-code=3"}
	})
	e.waitTasksEnded(t, []types.UID{crash.UID}, "TASK_FAILED", 2*time.Minute)
	e.eventually(t, time.Minute, "pod crash to be Failed", func() (bool, string) {
		p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, "crash", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		return p.Status.Phase == corev1.PodFailed, string(p.Status.Phase)
	})

	// A ReplicaSet's pods restart their containers forever (restartPolicy
	// Always); a container that can never be created (its ConfigMap is
	// missing) is what ends such a pod's task.
	replicas := int32(1)
	labels := map[string]string{"app": "needs-config"}
	spec := podSpec(func(s *corev1.PodSpec) {
		s.Containers[0].Env = append(s.Containers[0].Env, corev1.EnvVar{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "greeting"}, Key: "text"}}})
	})
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "needs-config"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
	}
	if _, err := e.cs.AppsV1().ReplicaSets(ns).Create(e.ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating replicaset: %v", err)
	}
	var first corev1.Pod
	e.eventually(t, 2*time.Minute, "a pod of the replicaset to fail", func() (bool, string) {
		var seen []string
		for _, p := range e.pods(t, ns, "app=needs-config") {
			if p.Status.Phase == corev1.PodFailed {
				first = p
				return true, ""
			}
			seen = append(seen, p.Name+" "+string(p.Status.Phase))
		}
		return false, fmt.Sprint(seen)
	})
	e.waitTasksEnded(t, []types.UID{first.UID}, "TASK_FAILED", time.Minute)
	t.Logf("pod %s failed: reason %q, message %q", first.Name, first.Status.Reason, first.Status.Message)
	e.eventually(t, time.Minute, "the replicaset to replace pod "+first.Name, func() (bool, string) {
		var others []string
		for _, p := range e.pods(t, ns, "app=needs-config") {
			if p.UID != first.UID {
				return true, ""
			}
			others = append(others, p.Name)
		}
		return false, fmt.Sprint(others)
	})
	// With its ConfigMap the next replacement runs.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "greeting"}, Data: map[string]string{"text": "hello"}}
	if _, err := e.cs.CoreV1().ConfigMaps(ns).Create(e.ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitRunning(t, ns, "app=needs-config", 1, 2*time.Minute)
}

// deleteDuringLaunch: pods deleted before they are scheduled, right after
// they are bound, or forcibly, never run on: their tasks (if any was
// launched) are killed, and none is launched twice.
func (e *k8smEnv) deleteDuringLaunch(t *testing.T, ns string) {
	var all []types.UID
	del := func(name string, grace *int64) {
		if err := e.cs.CoreV1().Pods(ns).Delete(e.ctx, name, metav1.DeleteOptions{GracePeriodSeconds: grace}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting pod %s: %v", name, err)
		}
	}
	zero := int64(0)
	for i := 0; i < 3; i++ {
		p := e.createPod(t, ns, fmt.Sprintf("early-%d", i))
		all = append(all, p.UID)
		del(p.Name, nil)
	}
	var bound []string
	var boundUIDs []types.UID
	for i := 0; i < 4; i++ {
		p := e.createPod(t, ns, fmt.Sprintf("bound-%d", i))
		all = append(all, p.UID)
		bound = append(bound, p.Name)
		boundUIDs = append(boundUIDs, p.UID)
	}
	// Delete each as soon as the scheduler binds it, while its task starts.
	deleted := map[string]bool{}
	e.eventually(t, 2*time.Minute, "every pod to be bound and deleted", func() (bool, string) {
		for i, name := range bound {
			if deleted[name] {
				continue
			}
			p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error()
			}
			if p.Spec.NodeName == "" {
				continue
			}
			if i%2 == 0 {
				del(name, nil)
			} else {
				del(name, &zero) // what `kubectl delete --force` does
			}
			deleted[name] = true
		}
		return len(deleted) == len(bound), fmt.Sprintf("deleted %v", deleted)
	})
	e.eventually(t, 2*time.Minute, "every pod to be gone", func() (bool, string) {
		ps := e.pods(t, ns, "")
		return len(ps) == 0, fmt.Sprintf("%d pods left", len(ps))
	})
	e.eventually(t, time.Minute, "every launched task to end", func() (bool, string) {
		st, err := e.masterState()
		if err != nil {
			return false, err.Error()
		}
		tasks := tasksByUID(st)
		var live []string
		for _, uid := range all {
			for _, tk := range tasks[string(uid)] {
				if !invariants.Terminal(tk.State) {
					live = append(live, tk.ID+" "+tk.State)
				}
			}
		}
		return len(live) == 0, fmt.Sprint(live)
	})
	// The scheduler binds a pod only after the broker launched its task:
	// each bound pod was deleted while its one task was being started.
	st, err := e.masterState()
	if err != nil {
		t.Fatal(err)
	}
	tasks := tasksByUID(st)
	for i, uid := range boundUIDs {
		if ts := tasks[string(uid)]; len(ts) != 1 {
			t.Errorf("pod %s, deleted once bound, has tasks %s; want exactly one", bound[i], describeTasks(ts))
		} else {
			t.Logf("pod %s, deleted once bound: task %s", bound[i], describeTasks(ts))
		}
	}
}

// logsAndExec: the real kubectl reads a pod's log and runs a command in it
// through the API server and the executor's kubelet.
func (e *k8smEnv) logsAndExec(t *testing.T, ns string) {
	// Without requests (BestEffort, as in most tutorials): it runs, charged
	// the broker's --default-pod-cpus/--default-pod-mem, and says so.
	e.createPod(t, ns, "web", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "web"}
		for i := range p.Spec.Containers {
			p.Spec.Containers[i].Resources = corev1.ResourceRequirements{}
		}
	})
	e.waitRunning(t, ns, "e2e=web", 1, 2*time.Minute)
	e.eventually(t, 30*time.Second, "an event saying what the BestEffort pod was charged", func() (bool, string) {
		evs := e.events(t, ns, "web")
		for _, ev := range evs {
			if strings.HasPrefix(ev, "MesosDefaultResources: ") && strings.Contains(ev, "0.25 cpus") {
				return true, ""
			}
		}
		return false, strings.Join(evs, "; ")
	})
	e.eventually(t, 30*time.Second, "kubectl logs to show the webapp's start", func() (bool, string) {
		out, err := e.kubectlErr("logs", "-n", ns, "web")
		return err == nil && strings.Contains(out, "serving on :8080"), out
	})
	out := e.kubectl(t, "exec", "-n", ns, "web", "--", "hostname")
	if strings.TrimSpace(out) != "web" {
		t.Errorf("kubectl exec hostname = %q, want web", out)
	}
	out = e.kubectl(t, "exec", "-n", ns, "web", "--", "sh", "-c", "echo $POD_NAMESPACE/$POD_NAME")
	if strings.TrimSpace(out) != ns+"/web" {
		t.Errorf("kubectl exec sh -c = %q, want %s/web", out, ns)
	}
}

// namespaceDeletion: deleting a namespace kills the task of every pod in it.
func (e *k8smEnv) namespaceDeletion(t *testing.T, ns string) {
	// A namespace of its own, deleted here; the test's namespace stays for
	// the wrapper.
	victim := ns + "-x"
	if _, err := e.cs.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: victim}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, time.Minute, "the default service account of "+victim, func() (bool, string) {
		_, err := e.cs.CoreV1().ServiceAccounts(victim).Get(e.ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	e.createDeployment(t, victim, "web", 4)
	e.createPod(t, victim, "single", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "single"} })
	pods := append(e.waitRunning(t, victim, "app=web", 4, 2*time.Minute), e.waitRunning(t, victim, "app=single", 1, time.Minute)...)
	if err := e.cs.CoreV1().Namespaces().Delete(e.ctx, victim, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually(t, 3*time.Minute, "namespace "+victim+" to be gone", func() (bool, string) {
		_, err := e.cs.CoreV1().Namespaces().Get(e.ctx, victim, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	e.waitTasksEnded(t, uids(pods), "TASK_KILLED", time.Minute)
}

// brokerRestart: the broker dies in the middle of a scale-up; the new one
// re-subscribes with the same FrameworkID, every pod runs, and no task is
// lost or doubled.
func (e *k8smEnv) brokerRestart(t *testing.T, ns string) {
	fwID := e.frameworkID(t)
	e.createDeployment(t, ns, "web", 2)
	e.waitRunning(t, ns, "app=web", 2, 2*time.Minute)
	before := e.pods(t, ns, "app=web")

	e.scale(t, ns, "web", 8)
	// Mid-scale-up: once the first new pod is bound.
	e.eventually(t, time.Minute, "a third pod to be bound", func() (bool, string) {
		n := 0
		for _, p := range e.pods(t, ns, "app=web") {
			if p.Spec.NodeName != "" {
				n++
			}
		}
		return n > 2, fmt.Sprintf("%d bound", n)
	})
	e.restartComponent(t, "k8sm-broker")
	e.eventually(t, time.Minute, "the new broker to be connected to Mesos", func() (bool, string) {
		b, err := e.get(e.metricsURL)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(string(b), "\nk8sm_broker_mesos_connected 1"), "not connected"
	})
	pods := e.waitRunning(t, ns, "app=web", 8, 3*time.Minute)
	if got := e.frameworkID(t); got != fwID {
		t.Errorf("the broker came back as framework %s, was %s", got, fwID)
	}
	st, err := e.masterState()
	if err != nil {
		t.Fatal(err)
	}
	for _, fw := range st.CompletedFrameworks {
		if fw.Name == "k8sm" {
			t.Errorf("framework %s was torn down by the restart", fw.ID)
		}
	}
	// No task lost: the pods that ran before the restart still run, the
	// same pods with the same tasks.
	still := map[types.UID]bool{}
	for _, p := range pods {
		still[p.UID] = true
	}
	for _, p := range before {
		if !still[p.UID] {
			t.Errorf("pod %s, running before the broker restart, is gone or ended after it", p.Name)
		}
	}
}

func (e *k8smEnv) frameworkID(t *testing.T) string {
	t.Helper()
	st, err := e.masterState()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, fw := range st.Frameworks {
		if fw.Name == "k8sm" && fw.Active {
			ids = append(ids, fw.ID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("want one active k8sm framework, have %v", ids)
	}
	return ids[0]
}

// restartComponent kills a component of the cluster (SIGKILL: a crash) and
// starts it again the way `make up` recovers from a crash.
func (e *k8smEnv) restartComponent(t *testing.T, name string) {
	t.Helper()
	pid := e.pid(t, name)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing %s (pid %d): %v", name, pid, err)
	}
	waitExit(t, pid)
	e.startAgain(t, name)
}

// pid is the process id of a component of the cluster.
func (e *k8smEnv) pid(t *testing.T, name string) int {
	t.Helper()
	pidFile := filepath.Join(e.cfg.StateDir, "pids", name+".pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("reading pid of %s: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %v", pidFile, err)
	}
	return pid
}

// startAgain starts a component that crashed, as `make up` does.
func (e *k8smEnv) startAgain(t *testing.T, name string) {
	t.Helper()
	cl, err := cluster.Up(e.ctx, e.cfg)
	if err != nil {
		t.Fatalf("starting %s again: %v", name, err)
	}
	if len(cl.Started) != 1 || cl.Started[0] != name {
		t.Errorf("up after %s crashed started %v, want only it", name, cl.Started)
	}
}

// pendingUntilAgentJoins: a pod that fits no agent stays Pending with the
// Mesos reason in its events, and runs as soon as an agent with room joins,
// long before the scheduler's 5-minute flush of unschedulable pods.
func (e *k8smEnv) pendingUntilAgentJoins(t *testing.T, ns string) {
	ags := e.agents(t)
	keeper, gone := ags[0], ags[1]
	// How fast the master notices is not this test's business.
	e.stopAgent(t, gone, true)
	t.Cleanup(func() { e.startAgent(t, gone) })

	// Fill the remaining agent so that at most half a cpu is left on it.
	fill := keeper.res.CPUs - e.opts.Executor.CPUs - 0.5
	e.createPod(t, ns, "filler", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "filler"}
		p.Spec.Containers[0].Resources.Requests = requests(fill, 32)
	})
	e.waitRunning(t, ns, "e2e=filler", 1, 2*time.Minute)
	// One cpu fits an empty agent, not the filled one.
	e.createPod(t, ns, "big", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "big"}
		p.Spec.Containers[0].Resources.Requests = requests(1, 32)
	})
	e.eventually(t, time.Minute, "pod big to be reported unschedulable for a Mesos reason", func() (bool, string) {
		evs := e.events(t, ns, "big")
		for _, ev := range evs {
			if strings.HasPrefix(ev, "FailedScheduling:") && strings.Contains(ev, "mesos") {
				t.Logf("pod big: %s", ev)
				return true, ""
			}
		}
		return false, fmt.Sprint(evs)
	})
	p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, "big", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending {
		t.Fatalf("pod big is %s on %q while no agent has room", p.Status.Phase, p.Spec.NodeName)
	}

	e.startAgent(t, gone)
	// Generous, but far below the scheduler's 5-minute flush: only offer
	// activation gets the pod placed in time.
	running := e.waitRunning(t, ns, "e2e=big", 1, 60*time.Second)
	if running[0].Spec.NodeName != gone.node {
		t.Errorf("pod big runs on %s, want the agent that joined (%s)", running[0].Spec.NodeName, gone.node)
	}
}

// stopAgent kills an agent and waits until the master has given up on it:
// after its health checks fail, or at once when fast (the master is told
// the agent is unreachable first).
func (e *k8smEnv) stopAgent(t *testing.T, a agent, fast bool) {
	t.Helper()
	if fast {
		e.control(t, fmt.Sprintf("agents/%d/unreachable", a.index))
	}
	e.control(t, fmt.Sprintf("agents/%d/kill", a.index))
	e.waitAgentActive(t, a, false, 3*time.Minute)
}

// startAgent restarts a killed agent (on its id and work dir) and waits until
// it is back in Mesos and its node is Ready. It does nothing to a running one.
func (e *k8smEnv) startAgent(t *testing.T, a agent) {
	t.Helper()
	for _, sa := range e.simAgents(t) {
		if sa.Index == a.index && sa.Running {
			return
		}
	}
	e.control(t, fmt.Sprintf("agents/%d/restart", a.index))
	e.waitAgentActive(t, a, true, 2*time.Minute)
	e.eventually(t, 2*time.Minute, "node "+a.node+" to be Ready", func() (bool, string) {
		return e.nodeReady(a.node), "not Ready"
	})
}

func (e *k8smEnv) waitAgentActive(t *testing.T, a agent, active bool, timeout time.Duration) {
	t.Helper()
	e.eventually(t, timeout, fmt.Sprintf("agent %s to be active=%v in Mesos", a.node, active), func() (bool, string) {
		st, err := e.masterState()
		if err != nil {
			return false, err.Error()
		}
		for _, s := range st.Slaves {
			if s.ID == a.id {
				return s.Active == active, fmt.Sprintf("active=%v", s.Active)
			}
		}
		return !active, "not known to the master"
	})
}

// agentKilled: an agent that dies while its executor (and kubelet) runs on
// is unreachable to Mesos, not gone: the broker subscribes PARTITION_AWARE,
// so its tasks are TASK_UNREACHABLE and its pods are kept, not failed and
// replaced while they still run (Kubernetes evicts them only if their Node
// goes NotReady, as for any unreachable kubelet). When the agent comes back,
// the same tasks run on and no pod ran twice.
func (e *k8smEnv) agentKilled(t *testing.T, ns string) {
	ags := e.agents(t)
	e.createDeployment(t, ns, "web", 4, func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.ScheduleAnyway,
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		}}
	})
	pods := e.waitRunning(t, ns, "app=web", 4, 2*time.Minute)
	on := map[string][]corev1.Pod{}
	for _, p := range pods {
		on[p.Spec.NodeName] = append(on[p.Spec.NodeName], p)
	}
	victim := ags[0]
	if len(on[ags[1].node]) > len(on[ags[0].node]) {
		victim = ags[1]
	}
	lost := on[victim.node]
	if len(lost) == 0 {
		t.Fatalf("no pod runs on either agent? %v", on)
	}
	e.stopAgent(t, victim, false)
	t.Cleanup(func() { e.startAgent(t, victim) })
	e.waitTasksEnded(t, uids(lost), "TASK_UNREACHABLE", time.Minute)

	e.startAgent(t, victim)
	e.waitTasksEnded(t, uids(lost), "TASK_RUNNING", 2*time.Minute)
	want := map[types.UID]bool{}
	for _, p := range pods {
		want[p.UID] = true
	}
	for _, p := range e.pods(t, ns, "app=web") {
		if !want[p.UID] || p.Status.Phase == corev1.PodFailed {
			t.Errorf("pod %s (%s, %s) after the agent came back: the pods of an unreachable agent must be kept, not failed or replaced", p.Name, p.UID, p.Status.Phase)
		}
	}
}
