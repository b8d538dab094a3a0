package invariants

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var k8smOpts = Options{Executor: Resources{CPUs: 0.25, Mem: 128}}

// world is the recorded state (testdata/master-state.json, in the shape of
// hack/mesos-sim/state and the real master) and the pods that match it.
func world(t *testing.T) (*MasterState, []v1.Pod) {
	t.Helper()
	b, err := os.ReadFile("testdata/master-state.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseMasterState(b)
	if err != nil {
		t.Fatal(err)
	}
	web1 := pod("ns1", "web-1", "uid-1", "k8sm-agent-0", v1.PodRunning)
	web1.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: 8080, HostPort: 31000}}
	web2 := pod("ns1", "web-2", "uid-2", "k8sm-agent-1", v1.PodRunning)
	web2.Annotations = map[string]string{
		"k8sm.io/wildcard-ports": "true",
		"k8sm.io/host-ports":     `[{"container":"web","containerPort":8080,"protocol":"TCP","hostPort":31005}]`,
	}
	web2.Spec.Containers[0].Ports = []v1.ContainerPort{{ContainerPort: 8080}}
	pending := pod("ns1", "big", "uid-4", "", v1.PodPending)
	other := pod("ns1", "elsewhere", "uid-5", "some-node", v1.PodRunning)
	other.Spec.SchedulerName = "default-scheduler"
	return st, []v1.Pod{web1, web2, pending, other}
}

func pod(ns, name, uid, node string, phase v1.PodPhase) v1.Pod {
	return v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid)},
		Spec: v1.PodSpec{SchedulerName: "mesos-scheduler", NodeName: node, Containers: []v1.Container{{
			Name: "web", Image: "k8sm.local/webapp:latest",
			Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
				v1.ResourceCPU: resource.MustParse("50m"), v1.ResourceMemory: resource.MustParse("32Mi")}},
		}}},
		Status: v1.PodStatus{Phase: phase},
	}
}

func task(id, uid, slave, state string, cpus, mem float64, ports string) Task {
	ps, err := ParsePorts(ports)
	if err != nil {
		panic(err)
	}
	return Task{ID: id, FrameworkID: "FW-k8sm", SlaveID: slave, State: state,
		Resources: Resources{CPUs: cpus, Mem: mem, Ports: ps},
		Labels:    []Label{{Key: "k8sm.io/uid", Value: uid}}}
}

func rules(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		if !slices.Contains(out, v.Rule) {
			out = append(out, v.Rule)
		}
	}
	slices.Sort(out)
	return out
}

func TestRecordedStateHoldsEveryInvariant(t *testing.T) {
	st, pods := world(t)
	if vs := Check(st, pods, k8smOpts); len(vs) != 0 {
		t.Fatalf("a consistent state reported violations:\n%v", vs)
	}
	if len(st.Slaves) != 2 || st.Slaves[1].UsedResources.Ports.String() != "[31005-31005]" || st.Frameworks[0].Executors[0].Resources.CPUs != 0.25 {
		t.Fatalf("recorded state decoded wrongly: %+v", st)
	}
}

// Each case breaks the recorded world in one way a k8sm bug would, and
// names the rules that must catch it.
func TestCheckFindsBrokenInvariants(t *testing.T) {
	k8sm := func(st *MasterState) *Framework { return &st.Frameworks[0] }
	cases := []struct {
		name    string
		opts    *Options
		break_  func(st *MasterState, pods []v1.Pod) []v1.Pod
		want    []string
		mention string // the detail must name the offender
	}{
		{
			name: "pod launched twice, on two agents",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				k8sm(st).Tasks = append(k8sm(st).Tasks, task("pod.uid-1", "uid-1", "S1", "TASK_RUNNING", 0.05, 32, "[31000-31000]"))
				st.Slaves[1].UsedResources = st.Slaves[1].UsedResources.Add(Resources{CPUs: 0.05, Mem: 32, Ports: PortSet{31000: {}}})
				return pods
			},
			want:    []string{RuleOneTaskPerPod, RuleRunningPodTask, RuleTaskHasPod},
			mention: "web-1",
		},
		{
			name: "pod relaunched after its first task failed",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				k8sm(st).CompletedTasks = append(k8sm(st).CompletedTasks, task("pod.uid-2", "uid-2", "S0", "TASK_FAILED", 0.05, 32, ""))
				return pods
			},
			want:    []string{RuleOneTaskPerPod},
			mention: "pod.uid-2 TASK_FAILED on S0 (completed_tasks",
		},
		{
			name: "second task for one pod under another id",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				k8sm(st).CompletedTasks = append(k8sm(st).CompletedTasks, task("pod.uid-1.retry", "uid-1", "S0", "TASK_KILLED", 0.05, 32, ""))
				return pods
			},
			want:    []string{RuleOneTaskPerPod},
			mention: "pod.uid-1.retry",
		},
		{
			name: "running pod without a task",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				k8sm(st).Tasks = k8sm(st).Tasks[:1]
				st.Slaves[1].UsedResources = Resources{CPUs: 1.25, Mem: 384}
				return pods
			},
			want:    []string{RuleBoundPodTask, RuleRunningPodTask},
			mention: "web-2",
		},
		{
			name: "pod back to Pending after its task failed",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				tk := k8sm(st).Tasks[1]
				tk.State = "TASK_FAILED"
				k8sm(st).Tasks = k8sm(st).Tasks[:1]
				k8sm(st).CompletedTasks = append(k8sm(st).CompletedTasks, tk)
				st.Slaves[1].UsedResources = Resources{CPUs: 1.25, Mem: 384}
				pods[1].Status.Phase = v1.PodPending
				return pods
			},
			want:    []string{RuleBoundPodTask},
			mention: "Pending on node \"k8sm-agent-1\", but no live task (tasks: pod.uid-2 TASK_FAILED",
		},
		{
			name: "pod stuck terminating after its task was killed",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				tk := k8sm(st).Tasks[0]
				tk.State = "TASK_KILLED"
				k8sm(st).Tasks = k8sm(st).Tasks[1:]
				k8sm(st).CompletedTasks = append(k8sm(st).CompletedTasks, tk)
				st.Slaves[0].UsedResources = Resources{CPUs: 0.25, Mem: 128}
				now := metav1.Now()
				pods[0].DeletionTimestamp = &now
				return pods
			},
			want:    []string{RuleBoundPodTask, RuleRunningPodTask},
			mention: "being deleted",
		},
		{
			name: "running pod whose task is still staging",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				k8sm(st).Tasks[1].State = "TASK_STAGING"
				return pods
			},
			want:    []string{RuleRunningPodTask},
			mention: "web-2",
		},
		{
			name: "pod bound to one node, task on the other agent",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				pods[0].Spec.NodeName = "k8sm-agent-1"
				return pods
			},
			want:    []string{RuleRunningPodTask, RuleTaskHasPod},
			mention: "k8sm-agent-0",
		},
		{
			name: "task of a deleted pod still running",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				return pods[1:]
			},
			want:    []string{RuleTaskHasPod},
			mention: "pod.uid-1",
		},
		{
			name: "task of a failed pod still running",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				pods[1].Status.Phase = v1.PodFailed
				pods[1].Status.Reason = "MesosTaskLost"
				return pods
			},
			want:    []string{RuleTaskHasPod},
			mention: "MesosTaskLost",
		},
		{
			name: "orphan task of a pod that is gone",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				st.OrphanTasks = append(st.OrphanTasks, task("pod.uid-9", "uid-9", "S0", "TASK_RUNNING", 0.05, 32, ""))
				st.Slaves[0].UsedResources = st.Slaves[0].UsedResources.Add(Resources{CPUs: 0.05, Mem: 32})
				return pods
			},
			want:    []string{RuleTaskHasPod},
			mention: "pod.uid-9",
		},
		{
			name: "killed task's resources never released",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				st.Slaves[0].UsedResources.CPUs += 0.05
				st.Slaves[0].UsedResources.Mem += 32
				return pods
			},
			want:    []string{RuleAgentUsed},
			mention: "k8sm-agent-0",
		},
		{
			name: "executor not counted as used",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				st.Slaves[0].UsedResources.CPUs -= 0.25
				st.Slaves[0].UsedResources.Mem -= 128
				return pods
			},
			want:    []string{RuleAgentUsed},
			mention: "executors cpus:0.25 mem:128",
		},
		{
			name: "task holds less than the pod asks for",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				pods[0].Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("100m")
				return pods
			},
			want:    []string{RuleAgentUsed, RuleTaskResources},
			mention: "cpus:0.1",
		},
		{
			name: "wildcard host port not recorded on the pod",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				delete(pods[1].Annotations, "k8sm.io/host-ports")
				return pods
			},
			want:    []string{RuleAgentUsed, RuleTaskResources},
			mention: "ports:[31005-31005]",
		},
		{
			name: "executor charged more than configured",
			opts: &Options{Executor: Resources{CPUs: 0.1, Mem: 64}},
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				return pods
			},
			want:    []string{RuleExecutorCharge},
			mention: "holds cpus:0.25 mem:128",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, pods := world(t)
			pods = c.break_(st, pods)
			opts := k8smOpts
			if c.opts != nil {
				opts = *c.opts
			}
			vs := Check(st, pods, opts)
			want := slices.Sorted(slices.Values(c.want))
			if got := rules(vs); !slices.Equal(got, want) {
				t.Fatalf("rules broken: %q, want %q\n%v", got, want, vs)
			}
			var all strings.Builder
			for _, v := range vs {
				all.WriteString(v.String() + "\n")
			}
			if !strings.Contains(all.String(), c.mention) {
				t.Errorf("violations do not mention %q:\n%s", c.mention, all.String())
			}
		})
	}
}

func TestCheckIgnoresWhatIsNotBroken(t *testing.T) {
	st, pods := world(t)
	// A task that ended but whose last update Mesos still waits to have
	// acknowledged stays under tasks: it holds nothing and needs no pod.
	st.Frameworks[0].Tasks = append(st.Frameworks[0].Tasks, task("pod.uid-7", "uid-7", "S0", "TASK_KILLED", 0.05, 32, ""))
	// A pod bound a moment ago whose task is still being started.
	starting := pod("ns1", "new", "uid-8", "k8sm-agent-0", v1.PodPending)
	pods = append(pods, starting)
	st.Frameworks[0].Tasks = append(st.Frameworks[0].Tasks, task("pod.uid-8", "uid-8", "S0", "TASK_STAGING", 0.05, 32, ""))
	st.Slaves[0].UsedResources = st.Slaves[0].UsedResources.Add(Resources{CPUs: 0.05, Mem: 32})
	// A framework torn down long ago.
	st.CompletedFrameworks = append(st.CompletedFrameworks, Framework{ID: "FW-old", Name: "k8sm",
		CompletedTasks: []Task{task("pod.uid-6", "uid-6", "S0", "TASK_KILLED", 0.05, 32, "")}})
	if vs := Check(st, pods, k8smOpts); len(vs) != 0 {
		t.Fatalf("violations reported for a consistent state:\n%v", vs)
	}
}

func TestDemand(t *testing.T) {
	p := pod("ns", "p", "u", "", v1.PodPending)
	p.Spec.Containers = append(p.Spec.Containers, v1.Container{Name: "side", Resources: v1.ResourceRequirements{
		Limits: v1.ResourceList{v1.ResourceCPU: resource.MustParse("150m"), v1.ResourceMemory: resource.MustParse("16Mi")}},
		Ports: []v1.ContainerPort{{ContainerPort: 80, HostPort: 31080}}})
	p.Spec.InitContainers = []v1.Container{{Name: "init", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{
		v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceEphemeralStorage: resource.MustParse("1Gi")}}}}
	p.Spec.Overhead = v1.ResourceList{v1.ResourceMemory: resource.MustParse("8Mi")}
	got, err := Demand(&p)
	if err != nil {
		t.Fatal(err)
	}
	want := Resources{CPUs: 0.5, Mem: 56, Disk: 1024, Ports: PortSet{31080: {}}}
	if !got.Equal(want) {
		t.Fatalf("demand %s, want %s", got, want)
	}
	// A pod without requests is charged the broker's defaults.
	be := pod("ns", "be", "u2", "", v1.PodPending)
	be.Spec.Containers = []v1.Container{{Name: "c"}}
	if got, err := Demand(&be); err != nil || !got.Equal(Resources{CPUs: 0.25, Mem: 64, Ports: PortSet{}}) {
		t.Errorf("demand of a pod without requests %s (%v), want the defaults cpus 0.25 mem 64", got, err)
	}
	// A sidecar runs beside the init containers after it and beside the
	// containers: app 1 cpu + sidecar 0.5, init phase 0.5 + 2 = 2.5 wins.
	always := v1.ContainerRestartPolicyAlways
	cpu := func(name, q string) v1.Container {
		return v1.Container{Name: name, Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(q), v1.ResourceMemory: resource.MustParse("10Mi")}}}
	}
	sc := pod("ns", "sc", "u3", "", v1.PodPending)
	sc.Spec.Containers = []v1.Container{cpu("app", "1")}
	side := cpu("side", "500m")
	side.RestartPolicy = &always
	sc.Spec.InitContainers = []v1.Container{cpu("first", "2"), side, cpu("second", "2")}
	if got, err := Demand(&sc); err != nil || !got.Equal(Resources{CPUs: 2.5, Mem: 20, Ports: PortSet{}}) {
		t.Errorf("demand of a pod with a sidecar %s (%v), want cpus 2.5 mem 20", got, err)
	}
	sc.Spec.Containers = []v1.Container{cpu("app", "4")}
	if got, err := Demand(&sc); err != nil || !got.Equal(Resources{CPUs: 4.5, Mem: 20, Ports: PortSet{}}) {
		t.Errorf("demand of a pod with a sidecar beside a large container %s (%v), want cpus 4.5 mem 20", got, err)
	}
	p.Annotations = map[string]string{"k8sm.io/host-ports": "not json"}
	if _, err := Demand(&p); err == nil {
		t.Fatal("a bad k8sm.io/host-ports annotation was accepted")
	}
}

func TestPorts(t *testing.T) {
	ps, err := ParsePorts("[31000-31002, 30000-30000]")
	if err != nil {
		t.Fatal(err)
	}
	if ps.String() != "[30000-30000, 31000-31002]" || len(ps) != 4 {
		t.Fatalf("parsed %s (%d ports)", ps, len(ps))
	}
	for _, bad := range []string{"[31002-31000]", "[x-1]", "[1-2-3]"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("%q was accepted", bad)
		}
	}
	if ps, err := ParsePorts("[]"); err != nil || len(ps) != 0 {
		t.Errorf("empty ranges: %v %v", ps, err)
	}
}

type fakeSource struct {
	states []*MasterState
	pods   []v1.Pod
	reads  int
	err    error
}

func (f *fakeSource) MasterState(context.Context) (*MasterState, error) {
	if f.err != nil {
		return nil, f.err
	}
	i := min(f.reads, len(f.states)-1)
	f.reads++
	return f.states[i], nil
}

func (f *fakeSource) Pods(context.Context) ([]v1.Pod, error) { return f.pods, nil }

func TestConverge(t *testing.T) {
	good, pods := world(t)
	bad, _ := world(t)
	bad.Frameworks[0].Tasks = append(bad.Frameworks[0].Tasks, task("pod.uid-1", "uid-1", "S1", "TASK_RUNNING", 0.05, 32, "[31000-31000]"))
	ctx := context.Background()

	src := &fakeSource{states: []*MasterState{bad, bad, good}, pods: pods}
	if err := Converge(ctx, src, k8smOpts, 10*time.Second, time.Millisecond); err != nil {
		t.Fatalf("a state that converges was reported: %v", err)
	}
	if src.reads != 3 {
		t.Errorf("converged after %d reads, want 3", src.reads)
	}

	err := Converge(ctx, &fakeSource{states: []*MasterState{bad}, pods: pods}, k8smOpts, 20*time.Millisecond, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), RuleOneTaskPerPod) || !strings.Contains(err.Error(), "ns1/web-1") {
		t.Fatalf("a doubled task was not reported by name: %v", err)
	}

	err = Converge(ctx, &fakeSource{err: errors.New("connection refused")}, k8smOpts, 20*time.Millisecond, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("an unreadable master was not reported: %v", err)
	}
}

// TestPodUIDOfAnAttempt: a task id names its pod with or without the
// launch attempt.
func TestPodUIDOfAnAttempt(t *testing.T) {
	for id, want := range map[string]string{"pod.u1": "u1", "pod.u1.3fa2-7": "u1", "other": ""} {
		if got := PodUID(Task{ID: id}); got != want {
			t.Errorf("PodUID(%s) = %q, want %q", id, got, want)
		}
	}
}
