//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/k8sm/k8sm/test/e2e/invariants"
)

// The scenarios of workloads of every kind through Mesos (issue 18):
// affinity and spread, StatefulSets, DaemonSets, Jobs, memory limits,
// init containers and sidecars, overhead and ephemeral storage, scheduling
// gates and suspended Jobs.

const zoneLabel = "k8sm.io/attribute-zone"

func selector(app string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}
}

// affinityAndSpread: required pod anti-affinity puts two pods on two agents
// and leaves a third Pending; a topology spread constraint over the agents'
// zone attribute keeps zones a and b balanced although every pod prefers
// zone a.
func (e *k8smEnv) affinityAndSpread(t *testing.T, ns string) {
	anti := func(s *corev1.PodSpec) {
		s.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: selector("anti"), TopologyKey: corev1.LabelHostname}}}}
	}
	e.createDeployment(t, ns, "anti", 2, func(d *appsv1.Deployment) { anti(&d.Spec.Template.Spec) })
	ps := e.waitRunning(t, ns, "app=anti", 2, 2*time.Minute)
	if ps[0].Spec.NodeName == ps[1].Spec.NodeName {
		t.Errorf("pods %s and %s, anti-affine by hostname, both run on %s", ps[0].Name, ps[1].Name, ps[0].Spec.NodeName)
	}
	e.createPod(t, ns, "third", func(p *corev1.Pod) {
		p.Labels = map[string]string{"app": "anti"}
		anti(&p.Spec)
	})
	e.eventually(t, time.Minute, "pod third to be unschedulable for its anti-affinity", func() (bool, string) {
		evs := e.events(t, ns, "third")
		for _, ev := range evs {
			if strings.HasPrefix(ev, "FailedScheduling:") && strings.Contains(ev, "anti-affinity") {
				return true, ""
			}
		}
		return false, fmt.Sprint(evs)
	})
	if p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, "third", metav1.GetOptions{}); err != nil || p.Spec.NodeName != "" {
		t.Errorf("pod third, anti-affine to a pod on every agent, is bound (%v)", err)
	}

	// Every pod prefers zone a; the spread constraint alone keeps b busy.
	zones := map[string]string{}
	for _, a := range e.agents(t) {
		n, err := e.cs.CoreV1().Nodes().Get(e.ctx, a.node, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		zones[a.node] = n.Labels[zoneLabel]
	}
	if zones["k8sm-agent-1"] != "a" || zones["k8sm-agent-2"] != "b" {
		t.Fatalf("the agents' zones (label %s) are %v, want k8sm-agent-1 in a and k8sm-agent-2 in b", zoneLabel, zones)
	}
	e.createDeployment(t, ns, "zoned", 6, func(d *appsv1.Deployment) {
		s := &d.Spec.Template.Spec
		s.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{{Weight: 100, Preference: corev1.NodeSelectorTerm{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: zoneLabel, Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}}}}}
		s.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
			MaxSkew: 1, TopologyKey: zoneLabel, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: selector("zoned")}}
	})
	perZone := map[string]int{}
	for _, p := range e.waitRunning(t, ns, "app=zoned", 6, 2*time.Minute) {
		perZone[zones[p.Spec.NodeName]]++
	}
	if perZone["a"] != 3 || perZone["b"] != 3 {
		t.Errorf("pods spread over zones %v, want 3 in a and 3 in b (maxSkew 1)", perZone)
	}
}

// statefulSet: the pods of a StatefulSet start one after the other, each
// once the one before is Ready, each with one task; a deleted ordinal comes
// back under its name with a new task, the old one killed.
func (e *k8smEnv) statefulSet(t *testing.T, ns string) {
	replicas := int32(3)
	ss := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: "db", Selector: selector("db"),
			PodManagementPolicy: appsv1.OrderedReadyPodManagement,
			Template:            corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "db"}}, Spec: podSpec()},
		},
	}
	if _, err := e.cs.AppsV1().StatefulSets(ns).Create(e.ctx, ss, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating statefulset: %v", err)
	}
	pods := e.waitRunning(t, ns, "app=db", 3, 3*time.Minute)
	readyAt := func(p *corev1.Pod) time.Time {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return c.LastTransitionTime.Time
			}
		}
		return time.Time{}
	}
	for i, p := range pods {
		if want := fmt.Sprintf("db-%d", i); p.Name != want {
			t.Fatalf("pods %v, want db-0, db-1, db-2", podNames(pods))
		}
		if i > 0 && p.CreationTimestamp.Time.Before(readyAt(&pods[i-1])) {
			t.Errorf("pod %s was created at %s, before %s was Ready (%s)", p.Name, p.CreationTimestamp.Time, pods[i-1].Name, readyAt(&pods[i-1]))
		}
	}
	old := pods[1]
	if err := e.cs.CoreV1().Pods(ns).Delete(e.ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.waitTasksEnded(t, []types.UID{old.UID}, "TASK_KILLED", 2*time.Minute)
	var back corev1.Pod
	e.eventually(t, 2*time.Minute, "db-1 to run again", func() (bool, string) {
		for _, p := range e.waitRunning(t, ns, "app=db", 3, 2*time.Minute) {
			if p.Name == old.Name {
				back = p
			}
		}
		return back.UID != old.UID, "still the old pod"
	})
	if out := strings.TrimSpace(e.kubectl(t, "exec", "-n", ns, "db-1", "--", "hostname")); out != "db-1" {
		t.Errorf("the new db-1's hostname is %q", out)
	}
}

func podNames(ps []corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

// jobs: a Job's pods end Succeeded with their tasks TASK_FINISHED; a
// failing Job's backoffLimit counts its failed tasks.
func (e *k8smEnv) jobs(t *testing.T, ns string) {
	job := func(name string, completions, backoff int32, exitCode string) *batchv1.Job {
		spec := podSpec(func(s *corev1.PodSpec) {
			s.RestartPolicy = corev1.RestartPolicyNever
			s.Containers[0].Args = []string{"--exit-after=1s", "--exit-code=" + exitCode}
		})
		j := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: batchv1.JobSpec{Completions: &completions, Parallelism: &completions, BackoffLimit: &backoff,
				Template: corev1.PodTemplateSpec{Spec: spec}},
		}
		j, err := e.cs.BatchV1().Jobs(ns).Create(e.ctx, j, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("creating job %s: %v", name, err)
		}
		return j
	}
	job("ok", 2, 0, "0")
	job("fails", 1, 1, "1")
	e.waitJob(t, ns, "ok", batchv1.JobComplete, "")
	e.waitJob(t, ns, "fails", batchv1.JobFailed, batchv1.JobReasonBackoffLimitExceeded)

	ok := e.pods(t, ns, "batch.kubernetes.io/job-name=ok")
	fails := e.pods(t, ns, "batch.kubernetes.io/job-name=fails")
	for _, p := range ok {
		if p.Status.Phase != corev1.PodSucceeded {
			t.Errorf("pod %s of the completed job is %s", p.Name, p.Status.Phase)
		}
	}
	// backoffLimit 1: the second failure ends the Job; no third pod runs.
	if len(ok) != 2 || len(fails) != 2 {
		t.Errorf("job ok has pods %v (want 2), job fails %v (want 2: backoffLimit 1)", podNames(ok), podNames(fails))
	}
	e.waitTasksEnded(t, uids(ok), "TASK_FINISHED", time.Minute)
	e.waitTasksEnded(t, uids(fails), "TASK_FAILED", time.Minute)
}

func (e *k8smEnv) waitJob(t *testing.T, ns, name string, cond batchv1.JobConditionType, reason string) {
	t.Helper()
	e.eventually(t, 2*time.Minute, fmt.Sprintf("job %s to be %s", name, cond), func() (bool, string) {
		j, err := e.cs.BatchV1().Jobs(ns).Get(e.ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		for _, c := range j.Status.Conditions {
			if c.Type == cond && c.Status == corev1.ConditionTrue && (reason == "" || c.Reason == reason) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%+v", j.Status)
	})
}

// oomKilled: a container that allocates past its memory limit is killed by
// the kernel; the pod says OOMKilled and so does its Mesos task: the task's
// reason is REASON_CONTAINER_LIMITATION_MEMORY, as Mesos' own containerizer
// reports it, and its message names the container.
func (e *k8smEnv) oomKilled(t *testing.T, ns string) {
	limit := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(podCPU), corev1.ResourceMemory: resource.MustParse("32Mi")}
	hog := e.createPod(t, ns, "hog", func(p *corev1.Pod) {
		c := &p.Spec.Containers[0]
		c.Resources = corev1.ResourceRequirements{Requests: limit, Limits: limit}
		c.Args = []string{"--alloc-mib=256"}
	})
	e.waitTasksEnded(t, []types.UID{hog.UID}, "TASK_FAILED", 2*time.Minute)
	p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, "hog", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Status.Phase != corev1.PodFailed || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil ||
		p.Status.ContainerStatuses[0].State.Terminated.Reason != "OOMKilled" {
		t.Fatalf("pod hog, allocating 256 MiB under a 32 MiB limit, is %s with container statuses %+v; want Failed, terminated OOMKilled", p.Status.Phase, p.Status.ContainerStatuses)
	}
	st := e.lastTaskStatus(t, hog.UID)
	if st.Reason != "REASON_CONTAINER_LIMITATION_MEMORY" || !strings.Contains(st.Message, "OOMKilled") {
		t.Errorf("the task of pod hog ended %s with reason %q, message %q; want REASON_CONTAINER_LIMITATION_MEMORY and a message saying OOMKilled", st.State, st.Reason, st.Message)
	}
	t.Logf("task of pod hog: %s %s: %s", st.State, st.Reason, st.Message)
}

// taskStatus is a Mesos TaskStatus as the v1 operator API's GET_TASKS shows it.
type taskStatus struct {
	State   string `json:"state"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
	Source  string `json:"source"`
}

// lastTaskStatus asks the master's operator API for the pod's task and
// returns its latest status (GET /master/state does not show messages or
// reasons; GET_TASKS carries whole TaskStatus messages).
func (e *k8smEnv) lastTaskStatus(t *testing.T, uid types.UID) taskStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.masterURL+"/api/v1", bytes.NewBufferString(`{"type":"GET_TASKS"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET_TASKS: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET_TASKS: %s: %s", resp.Status, b)
	}
	type task struct {
		TaskID struct {
			Value string `json:"value"`
		} `json:"task_id"`
		Statuses []taskStatus `json:"statuses"`
	}
	var out struct {
		GetTasks struct {
			Tasks          []task `json:"tasks"`
			CompletedTasks []task `json:"completed_tasks"`
		} `json:"get_tasks"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("decoding GET_TASKS: %v", err)
	}
	for _, tk := range slices.Concat(out.GetTasks.Tasks, out.GetTasks.CompletedTasks) {
		if invariants.PodUID(invariants.Task{ID: tk.TaskID.Value}) == string(uid) && len(tk.Statuses) > 0 {
			return tk.Statuses[len(tk.Statuses)-1]
		}
	}
	t.Fatalf("GET_TASKS shows no task with statuses for pod %s: %s", uid, b)
	return taskStatus{}
}

// initAndSidecar: an init container runs to completion before the
// containers, a sidecar (restartable init container) runs beside them; the
// pod's overhead (its RuntimeClass's) and ephemeral storage request are
// charged to its Mesos task, the storage as disk.
func (e *k8smEnv) initAndSidecar(t *testing.T, ns string) {
	rc := &nodev1.RuntimeClass{
		ObjectMeta: metav1.ObjectMeta{Name: ns},
		Handler:    "runc",
		Overhead: &nodev1.Overhead{PodFixed: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("16Mi")}},
	}
	if _, err := e.cs.NodeV1().RuntimeClasses().Create(e.ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating runtimeclass: %v", err)
	}
	t.Cleanup(func() {
		if err := e.cs.NodeV1().RuntimeClasses().Delete(e.ctx, rc.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting runtimeclass %s: %v", rc.Name, err)
		}
	})
	always := corev1.ContainerRestartPolicyAlways
	work := []corev1.VolumeMount{{Name: "work", MountPath: "/work"}}
	p := e.createPod(t, ns, "web", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "web"}
		s := &p.Spec
		s.RestartPolicy = corev1.RestartPolicyAlways
		s.RuntimeClassName = &rc.Name
		s.Volumes = []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		web := &s.Containers[0]
		web.VolumeMounts = work
		web.Resources.Requests[corev1.ResourceEphemeralStorage] = resource.MustParse("100Mi")
		side := *web.DeepCopy()
		side.Name, side.RestartPolicy, side.Args = "side", &always, []string{"--listen=:8081"}
		side.Resources.Requests = requests(0.05, 32)
		s.InitContainers = []corev1.Container{{
			Name: "prepare", Image: web.Image, ImagePullPolicy: web.ImagePullPolicy, VolumeMounts: work,
			Command: []string{"/bin/sh", "-c", "echo prepared > /work/init"},
		}, side}
	})
	if p.Spec.Overhead == nil {
		t.Fatalf("pod web has no overhead from runtimeclass %s", rc.Name)
	}
	p = &e.waitRunning(t, ns, "e2e=web", 1, 2*time.Minute)[0]
	if out := strings.TrimSpace(e.kubectl(t, "exec", "-n", ns, "web", "-c", "web", "--", "cat", "/work/init")); out != "prepared" {
		t.Errorf("the init container's file holds %q, want prepared", out)
	}
	if out := e.kubectl(t, "exec", "-n", ns, "web", "-c", "web", "--", "/webapp", "get", "http://127.0.0.1:8081/"); !strings.Contains(out, "hello from web") {
		t.Errorf("the sidecar answered the container %q", out)
	}
	// cpus: web 0.05 + side 0.05 + overhead 0.1; mem: 32 + 32 + 16 MB;
	// disk: the 100 MiB of ephemeral storage.
	want := invariants.Resources{CPUs: 0.2, Mem: 80, Disk: 100, Ports: invariants.PortSet{}}
	st, err := e.masterState()
	if err != nil {
		t.Fatal(err)
	}
	ts := tasksByUID(st)[string(p.UID)]
	if len(ts) != 1 {
		t.Fatalf("pod web has tasks %s", describeTasks(ts))
	}
	if got := ts[0].Resources; !got.Equal(want) {
		t.Errorf("the task of pod web holds %s, want %s", got, want)
	}
}

// gatesAndSuspend: a pod with a scheduling gate and a suspended Job take
// nothing from Mesos — the framework stays SUPPRESSed and holds no offer —
// and run once the gate is removed and the Job resumed.
func (e *k8smEnv) gatesAndSuspend(t *testing.T, ns string) {
	e.createPod(t, ns, "gated", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "gated"}
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "e2e.k8sm.io/hold"}}
	})
	suspend, one := true, int32(1)
	later := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "later"},
		Spec: batchv1.JobSpec{Suspend: &suspend, Completions: &one, Parallelism: &one,
			Template: corev1.PodTemplateSpec{Spec: podSpec(func(s *corev1.PodSpec) {
				s.RestartPolicy = corev1.RestartPolicyNever
				s.Containers[0].Args = []string{"--exit-after=1s"}
			})}},
	}
	if _, err := e.cs.BatchV1().Jobs(ns).Create(e.ctx, later, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A pod created after them runs: by then the broker has seen the gated
	// pod (its watch delivers events in order).
	e.createPod(t, ns, "plain", func(p *corev1.Pod) { p.Labels = map[string]string{"e2e": "plain"} })
	e.waitRunning(t, ns, "e2e=plain", 1, 2*time.Minute)
	e.eventually(t, 30*time.Second, "k8sm to suppress offers and hold none while only a gated pod waits", func() (bool, string) {
		b, err := e.get(e.metricsURL)
		if err != nil {
			return false, err.Error()
		}
		if !strings.Contains(string(b), "\nk8sm_broker_offers_suppressed 1") {
			return false, "the broker does not suppress offers"
		}
		st, err := e.masterState()
		if err != nil {
			return false, err.Error()
		}
		for _, s := range st.Slaves {
			if s.OfferedResources.CPUs > 0 || s.OfferedResources.Mem > 0 {
				return false, fmt.Sprintf("agent %s's %s are offered", s.Hostname, s.OfferedResources)
			}
		}
		return true, ""
	})
	g, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, "gated", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if g.Spec.NodeName != "" {
		t.Errorf("the gated pod is bound to %s", g.Spec.NodeName)
	}
	if ps := e.pods(t, ns, "batch.kubernetes.io/job-name=later"); len(ps) != 0 {
		t.Errorf("the suspended job has pods %v", podNames(ps))
	}
	st, err := e.masterState()
	if err != nil {
		t.Fatal(err)
	}
	if ts := tasksByUID(st)[string(g.UID)]; len(ts) != 0 {
		t.Errorf("the gated pod has tasks %s", describeTasks(ts))
	}

	if _, err := e.cs.CoreV1().Pods(ns).Patch(e.ctx, "gated", types.JSONPatchType, []byte(`[{"op":"remove","path":"/spec/schedulingGates"}]`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("removing the scheduling gate: %v", err)
	}
	if _, err := e.cs.BatchV1().Jobs(ns).Patch(e.ctx, "later", types.MergePatchType, []byte(`{"spec":{"suspend":false}}`), metav1.PatchOptions{}); err != nil {
		t.Fatalf("resuming the job: %v", err)
	}
	e.waitRunning(t, ns, "e2e=gated", 1, time.Minute)
	e.waitJob(t, ns, "later", batchv1.JobComplete, "")
	e.waitTasksEnded(t, uids(e.pods(t, ns, "batch.kubernetes.io/job-name=later")), "TASK_FINISHED", time.Minute)
}

// daemonSet: a DaemonSet runs one pod per agent, each through Mesos.
func (e *k8smEnv) daemonSet(t *testing.T, ns string) {
	e.runDaemonSet(t, ns)
}

// runDaemonSet creates the DaemonSet agentd and waits for its pod on each of
// the suite's agents; it returns their nodes, sorted.
func (e *k8smEnv) runDaemonSet(t *testing.T, ns string) []string {
	ags := e.agents(t)
	e.createDaemonSet(t, ns)
	var want []string
	for _, a := range ags {
		want = append(want, a.node)
	}
	if got := onNodes(e.waitRunning(t, ns, "app=agentd", len(ags), 2*time.Minute)); !slices.Equal(got, want) {
		t.Errorf("the daemonset's pods run on %v, want one on each of %v", got, want)
	}
	return want
}

// createDaemonSet creates the DaemonSet agentd (pods labelled app=agentd)
// in ns.
func (e *k8smEnv) createDaemonSet(t *testing.T, ns string) {
	t.Helper()
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "agentd"},
		Spec: appsv1.DaemonSetSpec{Selector: selector("agentd"),
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agentd"}},
				Spec: podSpec(func(s *corev1.PodSpec) {
					// The DaemonSet controller places pods only on nodes whose
					// taints they tolerate (every agent's Node has this one).
					s.Tolerations = []corev1.Toleration{{Key: "k8sm.io/mesos-agent", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
				})}},
	}
	if _, err := e.cs.AppsV1().DaemonSets(ns).Create(e.ctx, ds, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating daemonset: %v", err)
	}
}

// onNodes lists the nodes of pods, sorted.
func onNodes(ps []corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Spec.NodeName)
	}
	slices.Sort(out)
	return out
}

// daemonSetFollowsAgents: a DaemonSet runs a pod on an agent that joins the
// running cluster. It starts the suite's standby agent, which stays
// (cordoned) for the rest of the suite; agents() leaves it out.
func (e *k8smEnv) daemonSetFollowsAgents(t *testing.T, ns string) {
	want := e.runDaemonSet(t, ns)
	joiner := e.cfg.Agents // the first standby agent's index
	node := e.cfg.AgentName(joiner + 1)
	e.control(t, fmt.Sprintf("agents/%d/start", joiner))
	e.eventually(t, 2*time.Minute, "node "+node+" of the joining agent to be Ready", func() (bool, string) {
		return e.nodeReady(node), "not Ready"
	})
	pods := e.waitRunning(t, ns, "app=agentd", len(want)+1, 2*time.Minute)
	if got := onNodes(pods); !slices.Equal(got, append(want, node)) {
		t.Errorf("after %s joined the daemonset's pods run on %v", node, got)
	}
	// Retire the newcomer for the suites' other scenarios: no pod is placed
	// there any more, the daemon's pod goes with the namespace.
	e.kubectl(t, "cordon", node)
}

// identityWaitsForMesos: a StatefulSet's pod is recreated only once Mesos
// told k8sm that the old pod's task ended. The master holds back task
// statuses (as when an update waits in an agent after a master failover):
// the old db-0 stops and the master counts its task KILLED, but the broker
// has not heard it, so the old pod stays Terminating and no second db-0
// exists; once the statuses flow, db-0 runs again as a new pod.
func (e *k8smEnv) identityWaitsForMesos(t *testing.T, ns string) {
	e.createStatefulSet(t, ns, "db", 1)
	old := e.waitRunning(t, ns, "app=db", 1, 3*time.Minute)[0]
	e.control(t, "updates/hold")
	released := false
	release := func() {
		if !released {
			released = true
			e.control(t, "updates/release")
		}
	}
	defer release()
	if err := e.cs.CoreV1().Pods(ns).Delete(e.ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// No other db-0 while the framework has not heard the end.
	noSecond := func() (bool, string) {
		p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, old.Name, metav1.GetOptions{})
		switch {
		case err != nil:
			return false, fmt.Sprintf("the old %s is gone (%v) while the broker has not heard its task end", old.Name, err)
		case p.UID != old.UID:
			return false, fmt.Sprintf("a new %s (%s) exists while the broker has not heard the old one's task end", old.Name, p.UID)
		}
		return true, ""
	}
	e.waitTasksEnded(t, []types.UID{old.UID}, "TASK_KILLED", 2*time.Minute)
	// The kubelet removes a pod it stopped within a few seconds: give it
	// ten more, checking all along.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Second) {
		if ok, why := noSecond(); !ok {
			t.Fatal(why)
		}
	}
	release()
	e.eventually(t, 2*time.Minute, "db-0 to run again as a new pod", func() (bool, string) {
		ps := e.pods(t, ns, "app=db")
		for _, p := range ps {
			if p.Name == old.Name && p.UID != old.UID && p.Status.Phase == corev1.PodRunning {
				return true, ""
			}
		}
		return false, fmt.Sprintf("pods %v", podNames(ps))
	})
}
