package mesosoffers

import v1 "k8s.io/api/core/v1"

// benchFeedPods tells the plugin of the pods bound to the benchmark's
// Nodes, as the scheduler's pod informer does.
func benchFeedPods(pl *MesosOffers, pods []*v1.Pod) {
	pl.priorities = newPriorities()
	for _, p := range pods {
		pl.priorities.observe(p)
	}
}
