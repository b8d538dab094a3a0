package nodes

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/broker/metrics"
)

// The broker writes only Nodes it created. A Mesos agent may register under
// any hostname, including that of an ordinary worker; adopting that worker's
// Node would taint it, rewrite its status, and — when the agent goes away —
// mark it NotReady, which evicts the worker's pods. So the broker marks the
// Nodes it creates and leaves every other one alone.
const (
	// OwnerLabel marks a Node the broker created. Its prefix is one the
	// NodeRestriction admission plugin forbids kubelets to set, so no
	// kubelet can make its own Node look like the broker's.
	OwnerLabel = "k8sm.node-restriction.kubernetes.io/mirrored-by"
	// Owner is OwnerLabel's value.
	Owner = "k8sm-broker"
	// ReasonHostnameClash is the event reason on a Node the broker will
	// not adopt.
	ReasonHostnameClash = "K8smHostnameClash"
)

// Owned reports whether the broker created node.
func Owned(node *v1.Node) bool { return node.Labels[OwnerLabel] == Owner }

// clashMessage says why an agent is not mirrored and what to do about it.
func clashMessage(a *agentState) string {
	return fmt.Sprintf("Mesos agent %s registered with hostname %q, but Node %s was not created by k8sm-broker (no label %s=%s): the broker does not adopt it and the agent takes no pods. Give the agent another --hostname, or delete the Node if it is a leftover.",
		a.id, a.hostname, a.hostname, OwnerLabel, Owner)
}

// foreign handles an agent whose hostname is a Node the broker did not
// create: on the first sight, an event on that Node, a metric and a log
// line; every time, the agent drained in the offer cache so that no pod is
// placed on it under that Node's name.
func (m *Mirror) foreign(ctx context.Context, a *agentState, st *syncState, node *v1.Node) {
	msg := clashMessage(a)
	if m.cfg.Cache != nil {
		m.cfg.Cache.SetDraining(a.id, msg)
	}
	if st.foreign {
		return
	}
	st.foreign = true
	metrics.NodeHostnameClashes.Inc()
	klog.FromContext(ctx).Info("Not mirroring a Mesos agent: its hostname is a Node the broker did not create", "node", a.hostname, "agent", a.id)
	if m.recorder != nil {
		ref := &v1.ObjectReference{Kind: "Node", Name: node.Name, UID: node.UID, APIVersion: "v1"}
		m.recorder.Event(ref, v1.EventTypeWarning, ReasonHostnameClash, msg)
	}
}

// owned is called when the agent's Node is the broker's: an agent that
// clashed before (the foreign Node was deleted) takes pods again.
func (m *Mirror) owned(a *agentState, st *syncState) {
	if !st.foreign {
		return
	}
	st.foreign = false
	if m.cfg.Cache != nil {
		m.cfg.Cache.SetDraining(a.id, "")
	}
}

// newRecorder records the mirror's events as the broker (component
// k8sm-broker) through client.
func newRecorder(client kubernetes.Interface) (record.EventRecorder, func()) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "k8sm-broker"}), b.Shutdown
}
