package taskinfo

// The names k8sm writes on Kubernetes objects, declared here once: the
// broker writes them, the scheduler plugin and the executor read them, and
// users put some of them on their pods.
const (
	// AgentIDAnnotation on a Node names the Mesos agent behind it. The
	// broker's node mirror sets it; reconciliation and kills send it with
	// the task id.
	AgentIDAnnotation = "k8sm.io/agent-id"
	// AgentTaintKey is the NoSchedule taint the broker puts on every agent
	// Node, so that schedulers other than the mesos-scheduler profile (whose
	// pods tolerate it) leave them alone.
	AgentTaintKey = "k8sm.io/mesos-agent"
	// AttributeLabelPrefix starts the Node label of each agent attribute
	// (k8sm.io/attribute-<name>).
	AttributeLabelPrefix = "k8sm.io/attribute-"

	// WildcardPortsAnnotation opts a pod in to host ports chosen by k8sm: when
	// it is "true", every container port with hostPort 0 gets a port from the
	// agent's offered port ranges, recorded under HostPortsAnnotation.
	WildcardPortsAnnotation = "k8sm.io/wildcard-ports"
	// HostPortsAnnotation records the host ports k8sm chose for a pod's
	// wildcard ports, as a JSON list of podresources.PortAssignment. The
	// executor applies them to the pod it hands the kubelet and endpoints
	// are built from them.
	HostPortsAnnotation = "k8sm.io/host-ports"
	// RolesAnnotation restricts a pod to resources allocated to the listed
	// Mesos roles (comma-separated); without it the pod may use every role
	// the role policy allows its namespace. Either way the policy decides
	// (pkg/rolepolicy).
	RolesAnnotation = "k8sm.io/roles"
	// TaskIDAnnotation names the Mesos task a bound pod runs as (its launch
	// attempt, TaskID). The scheduler plugin sets it with the Binding, in the
	// same write, so a bound pod always names its attempt; the broker applies
	// only that task's statuses to the pod and kills any other task of it.
	TaskIDAnnotation = "k8sm.io/task-id"
	// TaskFinalizer holds a pod being deleted until Mesos said every task
	// of it ended (the broker removes it). The master's view of a task can
	// lag the agent's by the status update retry interval; without the
	// finalizer a StatefulSet could recreate a pod of the same name, and
	// Mesos would count two live tasks of one identity. Pods get it when
	// created (manifests/task-finalizer.yaml, a MutatingAdmissionPolicy).
	TaskFinalizer = "k8sm.io/task"

	// HostPrivateSelectorAnnotation on a Service without spec.selector
	// makes it a host-private Service: the broker publishes its
	// EndpointSlices at the agents' addresses and the host ports Mesos
	// allocated to the pods this label selector names (broker/hostprivate),
	// for Mesos clusters whose pod addresses are not routable.
	HostPrivateSelectorAnnotation = "k8sm.io/host-private-selector"
	// HostPrivateManagedBy is the endpointslice.kubernetes.io/managed-by
	// value of the EndpointSlices the broker publishes, so that the stock
	// EndpointSlice controllers leave them alone.
	HostPrivateManagedBy = "host-private.k8sm.io"

	// AnnotationPrefix is the prefix (before the "/") of every key k8sm
	// reads on pods.
	AnnotationPrefix = "k8sm.io"
)

// PodAnnotations are the k8sm.io/ annotations k8sm reads on pods; any other
// k8sm.io/ key on a pod is a mistake (podresources.ValidateAnnotations).
var PodAnnotations = []string{RolesAnnotation, WildcardPortsAnnotation, HostPortsAnnotation, TaskIDAnnotation}

// ServiceAnnotations are the k8sm.io/ annotations k8sm reads on Services.
var ServiceAnnotations = []string{HostPrivateSelectorAnnotation}
