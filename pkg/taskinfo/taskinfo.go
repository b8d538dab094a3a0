// Package taskinfo is the contract between the parts of k8sm: how a pod
// travels inside a Mesos TaskInfo and how its task is named (TaskID, PodUID),
// what a task's state means for its pod (Terminal), how the shared
// ExecutorInfo that runs the embedded kubelet is named and started, and the
// annotations, labels and taint k8sm writes on Kubernetes objects (keys.go).
// The broker, the scheduler plugin and the executor all read it; it imports
// none of them.
//
// A pod's task:
//   - TaskID: "pod.<pod uid>.<attempt>", the attempt being the broker's
//     reservation id: a pod is launched again (another reservation) only
//     when an earlier launch failed, and the id tells the attempts apart, so
//     that a status of an old attempt never touches the one that runs. The
//     Binding records the attempt that runs (TaskIDAnnotation). Tasks named
//     "pod.<pod uid>" (launched before attempts existed) are still read.
//   - Name: "<namespace>/<name>".
//   - Data: the JSON of the v1.Pod in its final shape (spec.nodeName = the
//     agent hostname, wildcard host ports recorded and set), encoded once by
//     the scheduler plugin (EncodePod), so that the executor can check what
//     it was asked to run.
//   - Labels: k8sm.io/namespace, k8sm.io/name, k8sm.io/uid.
//
// The executor: one per agent and framework, ExecutorID
// "k8sm-executor-<version>-<hash>", and a command that runs the k8sm-executor
// binary with the flags of ExecutorConfig. The ExecutorInfo is a pure function
// of the framework id and ExecutorConfig: Mesos refuses a task whose
// ExecutorInfo differs from that of the running executor with the same id,
// and the broker that launches the next task on an agent (after a restart or
// a failover) is often not the one that started its executor. The hash of the
// ExecutorInfo in the id means a changed configuration (or version) names a
// new executor instead of one Mesos would refuse; the executor reads its id
// from MESOS_EXECUTOR_ID and assumes nothing about it.
package taskinfo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Label keys carried by every pod task.
const (
	LabelNamespace = "k8sm.io/namespace"
	LabelName      = "k8sm.io/name"
	LabelUID       = "k8sm.io/uid"
)

// TaskIDPrefix starts every pod task's id.
const TaskIDPrefix = "pod."

// ExecutorVersion changes whenever the executor's contract or behaviour
// changes in a way that must not mix with executors already running.
const ExecutorVersion = "v1"

// TaskID is the Mesos task id of a pod's launch attempt:
// "pod.<uid>.<attempt>", or "pod.<uid>" without an attempt (the id of tasks
// launched before attempts existed). Attempts are reservation ids, unique per
// broker process; a retried launch of one attempt names the same task, and
// Mesos refuses a duplicate task id.
func TaskID(uid types.UID, attempt string) string {
	if attempt == "" {
		return TaskIDPrefix + string(uid)
	}
	return TaskIDPrefix + string(uid) + "." + attempt
}

// PodTaskID is the id of the task the pod runs as: the attempt its Binding
// recorded (TaskIDAnnotation), or, for a pod bound without one, the id
// without an attempt.
func PodTaskID(pod *v1.Pod) string {
	if id := pod.Annotations[TaskIDAnnotation]; id != "" && PodUID(id) == pod.UID {
		return id
	}
	return TaskID(pod.UID, "")
}

// ExecutorIDPrefix starts the id of every k8sm executor, of any version and
// configuration.
const ExecutorIDPrefix = "k8sm-executor-"

// ExecutorID is the id prefix shared by every executor of this version; the
// ExecutorInfo of NewExecutorInfo appends the hash of its configuration.
func ExecutorID() string { return ExecutorIDPrefix + ExecutorVersion }

// IsExecutorID reports whether id names a k8sm executor (of any version).
func IsExecutorID(id string) bool { return strings.HasPrefix(id, ExecutorIDPrefix) }

// PodRef names a pod as a task does.
type PodRef struct {
	Namespace, Name string
	UID             types.UID
}

func (r PodRef) String() string { return r.Namespace + "/" + r.Name + " (" + string(r.UID) + ")" }

// PodData is a pod as its task carries it: the pod's JSON, and the pod it
// names. The scheduler plugin encodes it (EncodePod) once, with the pod in
// its final shape; the broker passes it on as it came.
type PodData struct {
	Ref  PodRef
	JSON []byte
	// Attempt names the launch attempt (the broker sets it to the
	// reservation id); it is part of the task id.
	Attempt string
}

// EncodePod returns the task data of pod, which must be in its final shape:
// bound to its node (spec.nodeName), its wildcard host ports recorded. It
// sets the pod's kind, so that the data says what it is.
func EncodePod(pod *v1.Pod) (PodData, error) {
	pod.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}
	data, err := json.Marshal(pod)
	if err != nil {
		return PodData{}, fmt.Errorf("encoding pod %s/%s for its Mesos task: %w", pod.Namespace, pod.Name, err)
	}
	return PodData{Ref: RefOf(pod), JSON: data}, nil
}

// RefOf names pod as its task does.
func RefOf(pod *v1.Pod) PodRef {
	return PodRef{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}
}

// NewTaskID is the id of the task NewTask makes of pod.
func NewTaskID(pod PodData) string { return TaskID(pod.Ref.UID, pod.Attempt) }

// NewTask returns a TaskInfo for pod's launch attempt on agent, with the
// given resources and executor. The pod must have a UID.
func NewTask(pod PodData, agent mesos.AgentID, resources []mesos.Resource, exec *mesos.ExecutorInfo) (mesos.TaskInfo, error) {
	ref := pod.Ref
	if ref.UID == "" {
		return mesos.TaskInfo{}, fmt.Errorf("making the task of pod %s/%s: the pod has no UID", ref.Namespace, ref.Name)
	}
	if len(pod.JSON) == 0 {
		return mesos.TaskInfo{}, fmt.Errorf("making the task of pod %s: no pod data", ref)
	}
	return mesos.TaskInfo{
		Name:      ref.Namespace + "/" + ref.Name,
		TaskID:    mesos.TaskID{Value: NewTaskID(pod)},
		AgentID:   agent,
		Resources: resources,
		Executor:  exec,
		Data:      pod.JSON,
		Labels: &mesos.Labels{Labels: []mesos.Label{
			{Key: LabelNamespace, Value: &ref.Namespace},
			{Key: LabelName, Value: &ref.Name},
			{Key: LabelUID, Value: strPtr(string(ref.UID))},
		}},
	}, nil
}

func strPtr(s string) *string { return &s }

// Ref returns what the task's labels say about its pod, without decoding data.
func Ref(t *mesos.TaskInfo) (PodRef, error) {
	var r PodRef
	for _, l := range t.GetLabels().GetLabels() {
		switch l.Key {
		case LabelNamespace:
			r.Namespace = l.GetValue()
		case LabelName:
			r.Name = l.GetValue()
		case LabelUID:
			r.UID = types.UID(l.GetValue())
		}
	}
	if r.Namespace == "" || r.Name == "" || r.UID == "" {
		return r, fmt.Errorf("task %s lacks one of the labels %s, %s, %s", t.TaskID.Value, LabelNamespace, LabelName, LabelUID)
	}
	return r, nil
}

// Decode returns the pod a task carries and checks that it agrees with the
// task's id and labels. Errors say what is wrong, for the task's failure message.
func Decode(t *mesos.TaskInfo) (*v1.Pod, error) {
	if len(t.Data) == 0 {
		return nil, fmt.Errorf("task %s carries no pod: its data is empty", t.TaskID.Value)
	}
	var pod v1.Pod
	// Unknown fields are allowed: a newer broker may send a newer pod.
	if err := json.Unmarshal(t.Data, &pod); err != nil {
		return nil, fmt.Errorf("task %s carries no pod: its data is not the JSON of a v1.Pod: %w", t.TaskID.Value, err)
	}
	if pod.Kind != "" && pod.Kind != "Pod" {
		return nil, fmt.Errorf("task %s carries a %s, not a Pod", t.TaskID.Value, pod.Kind)
	}
	if pod.Name == "" || pod.UID == "" || len(pod.Spec.Containers) == 0 {
		return nil, fmt.Errorf("task %s carries no pod: the data has no pod name, UID or containers", t.TaskID.Value)
	}
	if pod.Namespace == "" {
		pod.Namespace = "default"
	}
	if PodUID(t.TaskID.Value) != pod.UID {
		return nil, fmt.Errorf("task %s carries pod %s/%s whose task id would start with %s", t.TaskID.Value, pod.Namespace, pod.Name, TaskID(pod.UID, ""))
	}
	if ref, err := Ref(t); err == nil && (ref.Namespace != pod.Namespace || ref.Name != pod.Name || ref.UID != pod.UID) {
		return nil, fmt.Errorf("task %s is labelled for pod %s but carries pod %s/%s (%s)", t.TaskID.Value, ref, pod.Namespace, pod.Name, pod.UID)
	}
	return &pod, nil
}

// ExecutorConfig is what the broker knows about running the executor.
type ExecutorConfig struct {
	// Command is the k8sm-executor binary: a path on the agent, or the name
	// of a file fetched into the sandbox from URIs ("./k8sm-executor").
	Command string
	// URIs are fetched into the sandbox first (the executor binary, a kubeconfig).
	URIs []mesos.CommandInfo_URI
	// SHA256 is the hex sha256 Command must have (Command fetched by
	// URIs). Mesos 1.11's CommandInfo.URI has no checksum field, so the
	// agent runs the executor through /bin/sh, which checks the fetched
	// file with sha256sum first and fails the launch, saying why on the
	// sandbox's stderr, when it differs (a corrupt or foreign download).
	SHA256 string
	// Kubeconfig for the node's kubelet (system:node:<agent hostname>); a
	// path on the agent, or relative to the sandbox.
	Kubeconfig string
	// ContainerRuntimeEndpoint is containerd's CRI socket, e.g. unix:///run/containerd/containerd.sock.
	ContainerRuntimeEndpoint string
	// RootDir is the kubelet's root directory on the agent (default /var/lib/k8sm/kubelet).
	RootDir string
	// ExtraArgs are appended as they are (--flag=value), e.g. serving certificates.
	ExtraArgs []string
	// Resources are the executor's own resources, charged once per agent.
	Resources []mesos.Resource
	// ShutdownGracePeriod is how long the agent lets the executor stop its
	// pods and clean up (kube-proxy's rules, the kubelet's mounts) after
	// SHUTDOWN before it kills it; 0 leaves the agent's
	// --executor_shutdown_grace_period (5 s by default), too short for a
	// pod's own grace period.
	ShutdownGracePeriod time.Duration
}

// Args returns the executor's command line arguments (argv[1:]). The node
// name is not among them: the executor uses the agent's hostname, which is
// the name of the Node the broker mirrored.
func (c ExecutorConfig) Args() []string {
	var a []string
	if c.Kubeconfig != "" {
		a = append(a, "--kubeconfig="+c.Kubeconfig)
	}
	if c.ContainerRuntimeEndpoint != "" {
		a = append(a, "--container-runtime-endpoint="+c.ContainerRuntimeEndpoint)
	}
	if c.RootDir != "" {
		a = append(a, "--root-dir="+c.RootDir)
	}
	return append(a, c.ExtraArgs...)
}

// NewExecutorInfo returns the ExecutorInfo shared by every pod task of a
// framework on an agent. Equal inputs give equal ExecutorInfos, byte for byte;
// its id is ExecutorID() + "-" + a hash of everything else in it.
func NewExecutorInfo(fw mesos.FrameworkID, c ExecutorConfig) *mesos.ExecutorInfo {
	shell := false
	cmd := c.Command
	args := append([]string{cmd}, c.Args()...)
	if c.SHA256 != "" {
		shell, cmd, args = true, VerifiedCommand(c.SHA256, args), nil
	}
	name := "k8sm executor (kubelet)"
	source := "k8sm"
	ei := &mesos.ExecutorInfo{
		FrameworkID: &fw,
		Type:        mesos.ExecutorInfo_CUSTOM,
		Name:        &name,
		Source:      &source,
		Command: &mesos.CommandInfo{
			Value:     &cmd,
			Shell:     &shell,
			Arguments: args,
			URIs:      c.URIs,
		},
		Resources: c.Resources,
	}
	if c.ShutdownGracePeriod > 0 {
		ei.ShutdownGracePeriod = &mesos.DurationInfo{Nanoseconds: int64(c.ShutdownGracePeriod)}
	}
	ei.ExecutorID = mesos.ExecutorID{Value: ExecutorID() + "-" + configHash(ei)}
	return ei
}

// VerifiedCommand is a /bin/sh command line that runs argv (argv[0] a
// fetched file) only when argv[0]'s sha256 is sum, and otherwise exits 1
// saying so on stderr. sha256sum is coreutils' (or busybox's): on every
// agent, and apart from the file it checks, so a corrupt binary cannot vouch
// for itself.
func VerifiedCommand(sum string, argv []string) string {
	file := argv[0]
	msg := "k8sm: the fetched executor " + file + " does not have the sha256 " + sum + " its URI names: the download is corrupt or of another build, and it was not run. If the fetcher cache of this agent (--fetcher_cache_dir) holds the bad copy, remove it there."
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	return "echo " + shellQuote(sum+"  "+file) + " | sha256sum -c >/dev/null 2>&1 || { echo " + shellQuote(msg) + " >&2; exit 1; }; exec " + strings.Join(quoted, " ")
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// configHash hashes what the agent runs. The framework id is left out: it
// is the same for every executor of the framework.
func configHash(ei *mesos.ExecutorInfo) string {
	c := *ei
	c.FrameworkID = nil
	c.ExecutorID = mesos.ExecutorID{}
	// gogo's Marshal writes fields in tag order and ExecutorInfo has no
	// maps, so equal values give equal bytes.
	b, err := c.Marshal()
	if err != nil {
		// Marshal of a well-formed message does not fail; an id that says
		// so is better than a panic in the broker.
		return "unhashable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:5])
}
