package executor

import (
	"fmt"
	"slices"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// A pod's host ports come from two places its owner controls: the spec
// (fixed when the pod is created) and the k8sm.io/host-ports annotation
// (editable at any time). Mesos allocated the task exactly its `ports`
// resources; any other port may be the agent's own (5051, 22) or another
// framework's task's, so the kubelet must never bind it.

// allocatedPorts are the host ports Mesos allocated to the task.
func allocatedPorts(info *mesos.TaskInfo) podresources.Ranges {
	var spans []podresources.Range
	for _, r := range info.Resources {
		if r.Name != podresources.Ports || r.Ranges == nil {
			continue
		}
		for _, rg := range r.Ranges.Range {
			spans = append(spans, podresources.Range{Begin: rg.Begin, End: rg.End})
		}
	}
	return podresources.NewRanges(spans...)
}

// checkHostPorts says which host ports the pod, as the kubelet would run it,
// binds without Mesos having allocated them to the task.
func checkHostPorts(info *mesos.TaskInfo, kubeletPod *v1.Pod) error {
	allocated := allocatedPorts(info)
	var outside []uint64
	for _, p := range podresources.HostPortsOf(kubeletPod) {
		if !allocated.Contains(p) {
			outside = append(outside, p)
		}
	}
	if len(outside) == 0 {
		return nil
	}
	return fmt.Errorf("pod %s/%s asks for host ports %v that Mesos did not allocate to task %s (allocated: %s); only ports of the task's ports resources may be used — the %s annotation is written by the scheduler and must not be edited",
		kubeletPod.Namespace, kubeletPod.Name, outside, info.TaskID.Value, allocated, taskinfo.HostPortsAnnotation)
}

// allocatedAssignments keeps the annotation's assignments to ports Mesos
// allocated to the task: whatever phase a pod is handed in (running,
// stopping, lingering), an edited annotation never reaches the kubelet.
func allocatedAssignments(info *mesos.TaskInfo, as []podresources.PortAssignment) []podresources.PortAssignment {
	allocated := allocatedPorts(info)
	return slices.DeleteFunc(slices.Clone(as), func(a podresources.PortAssignment) bool {
		return a.HostPort <= 0 || !allocated.Contains(uint64(a.HostPort))
	})
}
