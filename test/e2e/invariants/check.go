package invariants

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Options say which pods and which framework are k8sm's.
type Options struct {
	// FrameworkName is the name the broker registers with (default "k8sm").
	FrameworkName string
	// SchedulerName selects the pods k8sm runs (default "mesos-scheduler").
	SchedulerName string
	// Executor is what the broker charges once per agent for the executor
	// (its --executor-cpus and --executor-mem).
	Executor Resources
}

func (o Options) withDefaults() Options {
	if o.FrameworkName == "" {
		o.FrameworkName = "k8sm"
	}
	if o.SchedulerName == "" {
		o.SchedulerName = "mesos-scheduler"
	}
	return o
}

// Violation is one broken invariant.
type Violation struct {
	// Rule names the invariant.
	Rule string
	// Subject is the pod, task or agent at fault.
	Subject string
	Detail  string
}

func (v Violation) String() string { return fmt.Sprintf("[%s] %s: %s", v.Rule, v.Subject, v.Detail) }

// The rules.
const (
	RuleRunningPodTask = "running pod has one RUNNING task on its node's agent"
	RuleBoundPodTask   = "bound pod that has not ended has a live task"
	RuleTaskHasPod     = "live task belongs to a live pod on its agent"
	RuleOneTaskPerPod  = "no pod has two tasks"
	RuleTaskResources  = "task resources are the pod's demand"
	RuleExecutorCharge = "executor charged as configured"
	RuleAgentUsed      = "agent used resources are the sum over its pods"
)

// located is a task with where the state listed it.
type located struct {
	Task
	framework string
	where     string // "tasks", "completed_tasks", "orphan_tasks"
	// ours: a task of k8sm's framework (orphan tasks, whose framework has
	// not re-registered since a master failover, count when they name a pod).
	ours bool
}

func (l located) String() string {
	return fmt.Sprintf("%s %s on %s (%s of framework %s)", l.ID, l.State, l.SlaveID, l.where, l.framework)
}

// PodUID is the pod UID a task is for: its k8sm.io/uid label, else what
// follows "pod." in its id up to the launch attempt ("pod.<uid>.<attempt>");
// "" for tasks that are not k8sm's.
func PodUID(t Task) string {
	for _, l := range t.Labels {
		if l.Key == "k8sm.io/uid" && l.Value != "" {
			return l.Value
		}
	}
	if rest, ok := strings.CutPrefix(t.ID, "pod."); ok {
		uid, _, _ := strings.Cut(rest, ".")
		return uid
	}
	return ""
}

// Check returns every broken invariant, in a stable order. pods are all the
// pods of the cluster (any scheduler: pods of other schedulers are ignored).
func Check(st *MasterState, pods []v1.Pod, opts Options) []Violation {
	opts = opts.withDefaults()
	var out []Violation
	add := func(rule, subject, format string, args ...any) {
		out = append(out, Violation{Rule: rule, Subject: subject, Detail: fmt.Sprintf(format, args...)})
	}

	hostOf := map[string]string{} // slave id → hostname
	for _, s := range st.Slaves {
		hostOf[s.ID] = s.Hostname
	}
	agentName := func(id string) string {
		if h := hostOf[id]; h != "" {
			return h
		}
		return "unknown agent " + id
	}

	ours := func(fw Framework) bool { return fw.Name == opts.FrameworkName }
	// Every task entry for every pod UID, wherever the master lists it.
	byUID := map[string][]located{}
	// Live (non-terminal) tasks, by agent id, of every framework.
	live := map[string][]located{}
	collect := func(fw Framework, registered bool) {
		for _, t := range fw.Tasks {
			l := located{Task: t, framework: fw.ID, where: "tasks", ours: ours(fw)}
			if ours(fw) {
				if uid := PodUID(t); uid != "" {
					byUID[uid] = append(byUID[uid], l)
				}
			}
			if registered && !Terminal(t.State) {
				live[t.SlaveID] = append(live[t.SlaveID], l)
			}
		}
		if ours(fw) {
			for _, t := range fw.CompletedTasks {
				if uid := PodUID(t); uid != "" {
					byUID[uid] = append(byUID[uid], located{Task: t, framework: fw.ID, where: "completed_tasks"})
				}
			}
		}
	}
	for _, fw := range st.Frameworks {
		collect(fw, true)
	}
	for _, fw := range st.CompletedFrameworks {
		collect(fw, false)
	}
	for _, t := range st.OrphanTasks {
		l := located{Task: t, framework: t.FrameworkID, where: "orphan_tasks", ours: true}
		if uid := PodUID(t); uid != "" {
			byUID[uid] = append(byUID[uid], l)
		}
		if !Terminal(t.State) {
			live[t.SlaveID] = append(live[t.SlaveID], l)
		}
	}

	podByUID := map[string]*v1.Pod{}
	for i := range pods {
		p := &pods[i]
		if p.Spec.SchedulerName == opts.SchedulerName {
			podByUID[string(p.UID)] = p
		}
	}
	podName := func(p *v1.Pod) string { return fmt.Sprintf("pod %s/%s (%s)", p.Namespace, p.Name, p.UID) }

	// No pod has two tasks: one pod runs at most once.
	for _, uid := range sortedKeys(byUID) {
		ts := byUID[uid]
		if len(ts) < 2 {
			continue
		}
		subject := "pod UID " + uid
		if p := podByUID[uid]; p != nil {
			subject = podName(p)
		}
		add(RuleOneTaskPerPod, subject, "%d tasks: %s", len(ts), joinLocated(ts))
	}

	// Every Running pod has exactly one RUNNING task, on its node's agent.
	for _, p := range sortedPods(podByUID) {
		if p.Status.Phase != v1.PodRunning {
			continue
		}
		var running []located
		for _, l := range byUID[string(p.UID)] {
			if l.where != "completed_tasks" && l.State == "TASK_RUNNING" {
				running = append(running, l)
			}
		}
		switch {
		case len(running) == 0:
			add(RuleRunningPodTask, podName(p), "Running on node %q but no RUNNING task (tasks: %s)", p.Spec.NodeName, joinLocated(byUID[string(p.UID)]))
		case len(running) > 1:
			add(RuleRunningPodTask, podName(p), "%d RUNNING tasks: %s", len(running), joinLocated(running))
		case agentName(running[0].SlaveID) != p.Spec.NodeName:
			add(RuleRunningPodTask, podName(p), "Running on node %q but its task runs on agent %q: %s", p.Spec.NodeName, agentName(running[0].SlaveID), running[0])
		}
	}

	// A pod bound to an agent either has a live task there or has ended:
	// the scheduler binds only launched pods, and a task that ends ends its
	// pod (DESIGN: "a pod bound to a node has a live task, or ... it is
	// marked failed").
	for _, p := range sortedPods(podByUID) {
		if p.Spec.NodeName == "" || p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			continue
		}
		alive := false
		for _, l := range byUID[string(p.UID)] {
			if l.where != "completed_tasks" && !Terminal(l.State) {
				alive = true
			}
		}
		if !alive {
			what := string(p.Status.Phase)
			if p.DeletionTimestamp != nil {
				what += ", being deleted"
			}
			add(RuleBoundPodTask, podName(p), "%s on node %q, but no live task (tasks: %s)", what, p.Spec.NodeName, joinLocated(byUID[string(p.UID)]))
		}
	}

	// Every live task belongs to a live pod bound to its agent, and holds
	// what the pod asks for.
	execCharged := map[string]Resources{} // agent id → executors' resources
	for _, fw := range st.Frameworks {
		for _, e := range fw.Executors {
			execCharged[e.SlaveID] = execCharged[e.SlaveID].Add(e.Resources)
			if ours(fw) && !e.Resources.Equal(opts.Executor) {
				add(RuleExecutorCharge, fmt.Sprintf("executor %s on %s", e.ExecutorID, agentName(e.SlaveID)),
					"holds %s, the broker charges %s", e.Resources, opts.Executor)
			}
		}
	}
	for _, agentID := range sortedKeys(live) {
		for _, l := range live[agentID] {
			uid := PodUID(l.Task)
			if uid == "" || !l.ours {
				continue // another framework's task: not k8sm's to judge
			}
			p := podByUID[uid]
			switch {
			case p == nil:
				add(RuleTaskHasPod, "task "+l.ID, "%s but no pod with UID %s exists (task name %q)", l, uid, l.Name)
				continue
			case p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed:
				add(RuleTaskHasPod, "task "+l.ID, "%s but %s has ended (%s, reason %q)", l, podName(p), p.Status.Phase, p.Status.Reason)
			case p.Spec.NodeName != agentName(l.SlaveID):
				add(RuleTaskHasPod, "task "+l.ID, "%s but %s is bound to node %q", l, podName(p), p.Spec.NodeName)
			}
			want, err := Demand(p)
			if err != nil {
				add(RuleTaskResources, "task "+l.ID, "computing the demand of %s: %v", podName(p), err)
				continue
			}
			if !want.Equal(l.Resources) {
				add(RuleTaskResources, "task "+l.ID, "holds %s, %s asks for %s", l.Resources, podName(p), want)
			}
		}
	}

	// The master's used resources of an agent are the sum over its pods'
	// tasks plus its executors.
	for _, s := range st.Slaves {
		want := execCharged[s.ID]
		var parts []string
		for _, l := range live[s.ID] {
			r := l.Resources
			if p := podByUID[PodUID(l.Task)]; p != nil {
				if d, err := Demand(p); err == nil {
					r = d
				}
			}
			want = want.Add(r)
			parts = append(parts, fmt.Sprintf("%s=%s", l.ID, r))
		}
		if !want.Equal(s.UsedResources) {
			sort.Strings(parts)
			add(RuleAgentUsed, fmt.Sprintf("agent %s (%s)", s.Hostname, s.ID),
				"master counts %s used, the pods' tasks and executors make %s (executors %s; tasks: %s)",
				s.UsedResources, want, execCharged[s.ID], strings.Join(parts, ", "))
		}
	}
	return out
}

// DefaultPodCPUs and DefaultPodMemMB are the broker's defaults for a pod
// that requests no cpu or no memory.
const (
	DefaultPodCPUs  = 0.25
	DefaultPodMemMB = 64
)

// Demand is what a pod asks of its agent in Mesos terms: the sum of its
// containers' requests (limits where a request is missing), at least the
// largest init container's, plus the pod overhead; memory and disk in MB
// (2^20 bytes); the fixed host ports and those recorded for its wildcard
// ports (annotation k8sm.io/host-ports). Sidecars (restartable init
// containers) add to the init containers after them and to the containers.
// Pod-level resources are not handled: the e2e pods do not use them.
func Demand(p *v1.Pod) (Resources, error) {
	amount := func(c v1.Container, name v1.ResourceName) resource.Quantity {
		if q, ok := c.Resources.Requests[name]; ok {
			return q
		}
		return c.Resources.Limits[name]
	}
	of := func(get func(v1.ResourceName) resource.Quantity) Resources {
		cpu, mem, disk := get(v1.ResourceCPU), get(v1.ResourceMemory), get(v1.ResourceEphemeralStorage)
		gpu := get("nvidia.com/gpu")
		return Resources{
			CPUs: float64(cpu.MilliValue()) / 1000,
			Mem:  float64(mem.Value()) / (1 << 20),
			Disk: float64(disk.Value()) / (1 << 20),
			GPUs: float64(gpu.Value()),
		}
	}
	larger := func(a, b Resources) Resources {
		return Resources{CPUs: max(a.CPUs, b.CPUs), Mem: max(a.Mem, b.Mem), Disk: max(a.Disk, b.Disk), GPUs: max(a.GPUs, b.GPUs)}
	}
	var sum Resources
	for _, c := range p.Spec.Containers {
		sum = sum.Add(of(func(n v1.ResourceName) resource.Quantity { return amount(c, n) }))
	}
	// Init containers run one after the other, each beside the sidecars
	// (restartable init containers) started before it; sidecars then run
	// on beside the containers.
	var sidecars, initPeak Resources
	for _, c := range p.Spec.InitContainers {
		r := of(func(n v1.ResourceName) resource.Quantity { return amount(c, n) })
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			sidecars = sidecars.Add(r)
			initPeak = larger(initPeak, sidecars)
			continue
		}
		initPeak = larger(initPeak, sidecars.Add(r))
	}
	sum = larger(sum.Add(sidecars), initPeak)
	if p.Spec.Overhead != nil {
		o := p.Spec.Overhead
		sum = sum.Add(of(func(n v1.ResourceName) resource.Quantity { return o[n] }))
	}
	// What a pod does not request it is charged by default (the broker's
	// --default-pod-cpus and --default-pod-mem, docs/design-notes.md).
	if sum.CPUs == 0 {
		sum.CPUs = DefaultPodCPUs
	}
	if sum.Mem == 0 {
		sum.Mem = DefaultPodMemMB
	}
	ports := PortSet{}
	for _, cs := range [][]v1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				hp := cp.HostPort
				if hp == 0 && p.Spec.HostNetwork {
					hp = cp.ContainerPort
				}
				if hp != 0 {
					ports[uint64(hp)] = struct{}{}
				}
			}
		}
	}
	if v, ok := p.Annotations["k8sm.io/host-ports"]; ok {
		var as []struct {
			HostPort int32 `json:"hostPort"`
		}
		if err := json.Unmarshal([]byte(v), &as); err != nil {
			return Resources{}, fmt.Errorf("annotation k8sm.io/host-ports %q: %w", v, err)
		}
		for _, a := range as {
			ports[uint64(a.HostPort)] = struct{}{}
		}
	}
	sum.Ports = ports
	return sum, nil
}

// Source reads the two views the checks compare.
type Source interface {
	MasterState(ctx context.Context) (*MasterState, error)
	Pods(ctx context.Context) ([]v1.Pod, error)
}

// Converge checks until no invariant is broken or timeout passes (the
// system is eventually consistent: a pod just deleted may still have a task
// for a moment). The error lists what was still broken at the end.
func Converge(ctx context.Context, src Source, opts Options, timeout, interval time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last []Violation
	var lastErr error
	for {
		st, err := src.MasterState(ctx)
		var pods []v1.Pod
		if err == nil {
			pods, err = src.Pods(ctx)
		}
		if err == nil {
			last, lastErr = Check(st, pods, opts), nil
			if len(last) == 0 {
				return nil
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("checking invariants: %w", ctx.Err())
		case <-time.After(interval):
		}
	}
	if lastErr != nil && last == nil {
		return fmt.Errorf("invariants could not be checked for %s: %w", timeout, lastErr)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d invariant violations still present after %s:", len(last), timeout)
	for _, v := range last {
		b.WriteString("\n  " + v.String())
	}
	if lastErr != nil {
		fmt.Fprintf(&b, "\n  (the last read failed: %v)", lastErr)
	}
	return fmt.Errorf("%s", b.String())
}

func joinLocated(ls []located) string {
	if len(ls) == 0 {
		return "none"
	}
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.String()
	}
	return strings.Join(s, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func sortedPods(m map[string]*v1.Pod) []*v1.Pod {
	ps := make([]*v1.Pod, 0, len(m))
	for _, p := range m {
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].Namespace != ps[j].Namespace {
			return ps[i].Namespace < ps[j].Namespace
		}
		return ps[i].Name < ps[j].Name
	})
	return ps
}
