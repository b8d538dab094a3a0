package mesosoffers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// The plugin's decisions, apart from its hooks (plugin.go): whether a pod
// fits any agent at all, how a node's shortfall reads, which taints a pod
// of this profile tolerates, and what a broker error makes the scheduler do.

// fitsNoAgent explains why no agent's capacity (the most it ever offered)
// holds d, or returns "" when one does. It names the largest amount any agent
// offered, e.g. "at most 0.5 cpus offered, 2 requested".
// It reads agents, the mirror's view, under the mirror's lock.
func fitsNoAgent(agents map[string]*agent, d podresources.Demand) string {
	fits := false
	var most podresources.Resources
	var closest podresources.Shortfalls
	var closestHost string
	for _, a := range agents {
		if _, fits = a.capacity.Holds(d); fits {
			break
		}
		_, short := a.capacity.Fit(d)
		for _, r := range a.capacity {
			most.Scalars = most.Scalars.Max(r.Scalars)
			most.Ports = most.Ports.Union(r.Ports)
		}
		if closest == nil || len(short) < len(closest) || (len(short) == len(closest) && a.hostname < closestHost) {
			closest, closestHost = short, a.hostname
		}
	}
	switch {
	case fits:
		return ""
	case len(agents) == 0:
		return "mesos: no agent has offered resources yet"
	}
	if short := most.Fit(podresources.Demand{Scalars: d.Scalars, HostPorts: d.HostPorts}); !short.Fits() {
		return "mesos: the pod fits no agent: at most " + short.Error()
	}
	return "mesos: the pod fits no agent; the closest, " + closestHost + ": " + closest.Error()
}

// reasons words shortfalls so that they are the same on every agent.
func reasons(short podresources.Shortfalls, d podresources.Demand) []string {
	out := make([]string, 0, len(short))
	for _, s := range short {
		switch {
		case s.Resource == "role":
			// The roles are those the role policy lets the pod's namespace
			// use, narrowed by its k8sm.io/roles.
			out = append(out, "mesos: no resources offered for the roles the pod may use ("+s.Requested+")")
		case s.Resource == podresources.Ports && d.WildcardPorts > 0 && strings.Contains(s.Requested, "wildcard"):
			out = append(out, fmt.Sprintf("mesos: fewer than %d free ports offered", d.WildcardPorts))
		case s.Resource == podresources.Ports:
			out = append(out, "mesos: "+s.Requested)
		default:
			out = append(out, fmt.Sprintf("mesos: not enough %s offered (%s requested)", s.Resource, s.Requested))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// agentToleration is what every pod of the profile implicitly carries.
var agentToleration = v1.Toleration{Key: taskinfo.AgentTaintKey, Operator: v1.TolerationOpExists}

// filterTaints does what the stock TaintToleration filter does (which this
// profile disables, as it has no arguments to add a toleration), with the
// tolerations PreFilter built (tolerationsOf).
func filterTaints(ctx context.Context, pod *v1.Pod, node *v1.Node, tolerations []v1.Toleration, comparisonOperators bool) *fwk.Status {
	logger := klog.FromContext(ctx)
	taint := untoleratedTaint(logger, node, tolerations, comparisonOperators)
	if taint == nil {
		return nil
	}
	logger.V(4).Info("Node had untolerated taints", "node", klog.KObj(node), "pod", klog.KObj(pod), "untoleratedTaint", taint)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "node(s) had untolerated taint(s)")
}

// brokerStatus turns a broker error into what the scheduler should do: a
// claim that lost a race or offers that went away make the pod retry like any
// unschedulable pod; anything else is an error with back-off.
func brokerStatus(doing string, err error) *fwk.Status {
	msg := fmt.Sprintf("mesos: %s: %s", doing, status.Convert(err).Message())
	switch status.Code(err) {
	case codes.ResourceExhausted, codes.NotFound, codes.Aborted, codes.FailedPrecondition:
		return fwk.NewStatus(fwk.Unschedulable, msg)
	case codes.Unavailable, codes.DeadlineExceeded:
		if mesosUnavailable(err) {
			return fwk.NewStatus(fwk.Error, fmt.Sprintf("mesos: %s: the Mesos master did not answer the k8sm broker: %s", doing, status.Convert(err).Message()))
		}
		return fwk.NewStatus(fwk.Error, fmt.Sprintf("mesos: %s: the k8sm broker is unreachable: %s", doing, status.Convert(err).Message()))
	}
	return fwk.AsStatus(fmt.Errorf("%s: %w", doing, err))
}

// mesosUnavailable tells whether the broker said that the Mesos master, not
// the broker itself, failed to answer.
func mesosUnavailable(err error) bool {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == brokerv1.ErrorDomain && info.GetReason() == brokerv1.ReasonMesosUnavailable {
			return true
		}
	}
	return false
}
