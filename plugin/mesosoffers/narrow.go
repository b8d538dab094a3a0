package mesosoffers

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
)

// What keeps the scheduler's scan short: PreFilter names the agents whose
// offers hold the pod, so that Filter never visits the agents whose offers
// are out (most of them, in a burst), and the pod's tolerations are built
// once per cycle instead of once per node. Node events come with a
// QueueingHint, so that a taint change requeues only the pods it helps.

// candidateNodes are the nodes worth filtering for the pod: the
// agents whose offers (less the plugin's own claims) hold it, and, for a
// pod that may preempt, every node running a pod of lower priority. Nodes
// outside PreFilterResult.NodeNames are UnschedulableAndUnresolvable, which
// preemption skips, so a node where evicting a victim could make room must
// stay in. nil means no narrowing: an empty set would make the pod
// unresolvable everywhere, and Filter explains per node instead.
//
// A pod the scheduler already failed to place is not narrowed: nodes
// outside the set are reported as "didn't satisfy plugin(s) [MesosOffers]",
// and its FailedScheduling event should say per node what Mesos is short of
// (the first attempt of every pod, the bulk of a burst, is narrowed).
//
// Both parts come from indexes kept as offers and pods change (fitIndex,
// priorities), so the cost grows with the set returned, not with the agents
// and their pods. The set may be the index's own: callers must not change
// it, nor read it after the scheduling cycle (the scheduler merges
// PreFilter results into sets of its own; the index applies the changes
// since at the next cycle's PreFilter, fitIndex).
//
// A pod that may preempt on (about) every node is not narrowed either:
// naming every node costs a set as large as the cluster here and in the
// scheduler, and saves no Filter.
//
// names are the agents that hold the pod (mirror.fitting), asked for only
// when narrows says so, and only when they are at most maxNarrowed.
func candidateNodes(names sets.Set[string], prios *priorities, pod *v1.Pod) sets.Set[string] {
	prio, preempts := corev1helpers.PodPriority(pod), mayPreempt(pod)
	var preemptible []string
	if preempts {
		preemptible = prios.below(prio, names)
	}
	// The scheduler tries the nominated node first; keep it comparable.
	nominated := pod.Status.NominatedNodeName
	addNominated := nominated != "" && !names.Has(nominated) && (len(names) > 0 || len(preemptible) > 0)
	if len(preemptible) == 0 && !addNominated {
		if len(names) == 0 {
			return nil
		}
		return names
	}
	out := make(sets.Set[string], len(names)+len(preemptible)+1)
	for n := range names {
		out.Insert(n)
	}
	out.Insert(preemptible...)
	if addNominated {
		out.Insert(nominated)
	}
	return out
}

// maxNarrowed is the most agents PreFilter names out of allNodes. Naming
// costs the scheduler per name and per attempt, whatever the set: it
// clones NodeNames (PreFilterResult.Merge) and looks every name up in its
// snapshot; about 0.36 µs of CPU per name plus the garbage, 1.8 ms per
// attempt at 5,000 agents all offered with the fit index's copy of the set
// at the next change, which it no longer makes (docs/benchmarks.md, "Why
// the serial cycle costs more at 5,000 agents"). Naming saves the Filter of
// the nodes left out and, as percentageOfNodesToScore counts the named
// nodes, some Score; past two thirds of the cluster it saves less than it
// costs. Below minNarrowNodes the scheduler filters every node anyway and
// naming is cheap: always name.
func maxNarrowed(allNodes int) int {
	if allNodes < minNarrowNodes {
		return math.MaxInt
	}
	return allNodes * 2 / 3
}

// minNarrowNodes is the scheduler's minFeasibleNodesToFind.
const minNarrowNodes = 100

// narrows is whether candidateNodes names nodes for the pod at all: not
// for a pod that failed before, nor for one that may preempt on (about)
// every one of allNodes.
func narrows(prios *priorities, pod *v1.Pod, allNodes int) bool {
	if failedBefore(pod) {
		return false
	}
	if mayPreempt(pod) {
		if n := prios.nodesBelow(corev1helpers.PodPriority(pod)); n > 0 && n >= allNodes-allNodes/10 {
			return false
		}
	}
	return true
}

// failedBefore is whether the scheduler has marked the pod unschedulable.
func failedBefore(pod *v1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable {
			return true
		}
	}
	return false
}

// mayPreempt is whether DefaultPreemption would evict for the pod.
func mayPreempt(pod *v1.Pod) bool {
	return pod.Spec.PreemptionPolicy == nil || *pod.Spec.PreemptionPolicy != v1.PreemptNever
}

// tolerationsOf is what the pod tolerates in this profile: its own
// tolerations and, with Args.TolerateAgentTaint, the agent taint.
func tolerationsOf(pod *v1.Pod) []v1.Toleration {
	return append(slices.Clip(pod.Spec.Tolerations), agentToleration)
}

// EventsToRegister lists the cluster events that can make a rejected pod
// schedulable. Offers are not among them (they are not Kubernetes objects):
// the offer watch activates pods itself. A new Node is a new agent; a taint
// change matters because this plugin applies taints in this profile, and the
// hint requeues a pod only when the change makes the node's taints
// tolerable to it, as TaintToleration's does.
func (pl *MesosOffers) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeTaint}, QueueingHintFn: pl.isSchedulableAfterNodeChange},
		{Event: fwk.ClusterEvent{Resource: fwk.TargetPod, ActionType: fwk.UpdatePodToleration}},
	}, nil
}

// isSchedulableAfterNodeChange queues the pod when a node appeared or lost
// a taint and the pod tolerates every NoSchedule/NoExecute taint it has now
// but did not before (a new node counts as not tolerated before).
func (pl *MesosOffers) isSchedulableAfterNodeChange(logger klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldNode, _ := oldObj.(*v1.Node)
	newNode, ok := newObj.(*v1.Node)
	if !ok {
		return fwk.Queue, nil
	}
	if !*pl.args.TolerateAgentTaint {
		// Taints are TaintToleration's business in such a profile; a new
		// Node is a new agent.
		if oldNode == nil {
			return fwk.Queue, nil
		}
		return fwk.QueueSkip, nil
	}
	tolerations := tolerationsOf(pod)
	wasUntolerated := oldNode == nil || untoleratedTaint(logger, oldNode, tolerations, pl.comparisonOperators) != nil
	if wasUntolerated && untoleratedTaint(logger, newNode, tolerations, pl.comparisonOperators) == nil {
		logger.V(5).Info("Node change may make the pod schedulable", "pod", klog.KObj(pod), "node", klog.KObj(newNode))
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

func untoleratedTaint(logger klog.Logger, node *v1.Node, tolerations []v1.Toleration, comparisonOperators bool) *v1.Taint {
	// FindMatchingUntoleratedTaint's answer without its copy of the
	// node's taints: Filter asks for every node.
	for i := range node.Spec.Taints {
		taint := &node.Spec.Taints[i]
		if taint.Effect != v1.TaintEffectNoSchedule && taint.Effect != v1.TaintEffectNoExecute {
			continue
		}
		if !corev1helpers.TolerationsTolerateTaint(logger, tolerations, taint, comparisonOperators) {
			t := *taint
			return &t
		}
	}
	return nil
}

// leftOut explains the nodes PreFilter left out of the pod's NodeNames, as
// the scheduler's FitError counts Filter reasons ("2 mesos: host ports
// [31080-31080] not offered"). The scheduler reports each of them only as
// "didn't satisfy plugin(s) [MesosOffers]", so without this the first
// FailedScheduling of a narrowed pod would not say what Mesos is short of.
// It returns nil when PreFilter did not narrow.
func (pl *MesosOffers) leftOut(ctx context.Context, state fwk.CycleState, pod *v1.Pod) []string {
	ds, err := demandStateFrom(state)
	if err != nil || ds.narrowed == nil || pl.handle == nil {
		return nil
	}
	nodes, err := pl.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return nil
	}
	counts := map[string]int{}
	for _, n := range nodes {
		node := n.Node()
		if node == nil || ds.narrowed.Has(node.Name) {
			continue
		}
		if *pl.args.TolerateAgentTaint {
			if st := filterTaints(ctx, pod, node, ds.tolerations, pl.comparisonOperators); st != nil {
				counts[st.Message()]++
				continue
			}
		}
		a := pl.mirror.get(node.Name)
		if a == nil {
			counts["mesos: no outstanding offers from the node"]++
			continue
		}
		r, _ := room(state, a)
		_, short := r.Fit(ds.demand)
		if short.Fits() {
			// Offers came back since PreFilter; the next attempt sees them.
			continue
		}
		if a.launching {
			counts[reasonLaunching]++
			continue
		}
		for _, r := range reasons(short, ds.demand) {
			counts[r]++
		}
	}
	if len(counts) == 0 {
		return nil
	}
	out := make([]string, 0, len(counts))
	for r, n := range counts {
		out = append(out, fmt.Sprintf("%d %s", n, r))
	}
	slices.Sort(out)
	return []string{"Of the nodes MesosOffers did not filter: " + strings.Join(out, ", ")}
}
