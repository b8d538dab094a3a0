// Package podresources translates between what a Kubernetes pod asks for and
// what Mesos offers.
//
// A pod's demand is computed the way the Kubernetes scheduler computes
// requests (k8s.io/component-helpers/resource.PodRequests: sum of containers,
// maximum of init containers with restartable sidecars accumulated, pod-level
// resources, pod overhead) and expressed in Mesos units: cpus, mem (MB), disk
// (MB), gpus and ports. Quantities are kept in Mesos's own fixed-point
// precision (thousandths) so that adding and subtracting offers and
// reservations never drifts the way float64 sums do; a double-booking caused by
// rounding would be invisible until a task fails on the agent.
package podresources
