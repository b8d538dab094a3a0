package mesosoffers

import (
	"context"
	"encoding/json"
	"fmt"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apitypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// AdoptedTaskReason is the reason of the event on a pod bound to the node
// of a live task of an earlier attempt, instead of the node the scheduler
// picked.
const AdoptedTaskReason = "MesosTaskAdopted"

// What Bind does besides calling the broker: the pod's final shape (the one
// place it gets it), its host ports recorded in the API server, and the
// Binding.

// bind binds the pod to nodeName as task taskID: the Binding's annotations
// go onto the pod in the same write (the API server's binding storage), so a
// bound pod always names the launch attempt it runs as, and the broker
// tells that task's statuses from an earlier attempt's.
func (pl *MesosOffers) bind(ctx context.Context, p *v1.Pod, nodeName, taskID string) error {
	binding := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID,
			Annotations: map[string]string{taskinfo.TaskIDAnnotation: taskID}},
		Target: v1.ObjectReference{Kind: "Node", Name: nodeName},
	}
	if c := pl.handle.APICacher(); c != nil {
		// With asynchronous API calls the scheduler's cache must see the
		// binding through its dispatcher, as DefaultBinder does.
		onFinish, err := c.BindPod(binding)
		if err != nil {
			return err
		}
		return c.WaitOnFinish(ctx, onFinish)
	}
	return pl.handle.ClientSet().CoreV1().Pods(p.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
}

// adopted says, in the log and on the pod, that the broker answered the
// Launch with a live task of an earlier attempt of the pod on another node
// than the one the scheduler picked: a broker died after the master took
// that attempt's ACCEPT, before it answered. The pod is bound there, as
// that task; a second task would make the pod two Mesos tasks, and killing
// the first one to launch on the picked node, two as well (one ended). The
// scheduler's cache moves a pod assumed on one node and added on another
// to the node it was added on (upstream cacheImpl.AddPod), so its
// resources count where the task uses them; the reservation on the picked
// node went back to the offers. The stock Scheduled event still names the
// picked node, hence this one.
func (pl *MesosOffers) adopted(logger klog.Logger, p *v1.Pod, picked string, resp *brokerv1.LaunchResponse) {
	logger.Info("Binding the pod to the node of its earlier attempt's live task, which the broker adopted instead of launching", "pod", klog.KObj(p),
		"picked", picked, "node", resp.GetNodeName(), "task", resp.GetTaskId(), "agent", resp.GetAgentId())
	if rec := pl.handle.EventRecorder(); rec != nil {
		rec.Eventf(p, nil, v1.EventTypeNormal, AdoptedTaskReason, "Binding",
			"Bound to node %s as Mesos task %s, a live earlier attempt of the pod (the k8sm broker had launched it, then restarted before answering), instead of launching a second task on node %s",
			resp.GetNodeName(), resp.GetTaskId(), picked)
	}
}

// taskPod gives the pod its final shape, the one place it gets it: a copy
// bound to nodeName, with the host ports Reserve chose for its wildcard
// ports set on them and recorded in its annotation. The copy becomes the
// task's data; the annotation also goes to the API server (recordHostPorts),
// where endpoints and the executor read it.
func taskPod(p *v1.Pod, nodeName string, wildcardHostPorts []uint64) (*v1.Pod, error) {
	pod := p.DeepCopy()
	pod.Spec.NodeName = nodeName
	if len(wildcardHostPorts) == 0 {
		return pod, nil
	}
	as, err := podresources.AssignWildcardPorts(pod, wildcardHostPorts)
	if err != nil {
		return nil, fmt.Errorf("assigning host ports to pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	podresources.ApplyPortAssignments(pod, as)
	if err := podresources.RecordPortAssignments(pod, as); err != nil {
		return nil, fmt.Errorf("recording host ports of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return pod, nil
}

// recordHostPorts stores the host ports taskPod recorded on the pod in the
// API server, before the launch: a pod's ports cannot be updated, so
// endpoints and the executor read them from the annotation.
func (pl *MesosOffers) recordHostPorts(ctx context.Context, pod *v1.Pod) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"uid":         pod.UID, // the patch fails if the pod was replaced meanwhile
		"annotations": map[string]string{taskinfo.HostPortsAnnotation: pod.Annotations[taskinfo.HostPortsAnnotation]},
	}})
	if err != nil {
		return err
	}
	if _, err := pl.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, apitypes.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("recording host ports on pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	return nil
}
