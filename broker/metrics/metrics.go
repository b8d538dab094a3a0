// Package metrics holds the broker's Prometheus metrics, registered in
// component-base's legacy registry so that /metrics serves them beside the
// process and Go runtime metrics, as in every Kubernetes component.
package metrics

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

const subsystem = "k8sm_broker"

var (
	// OffersReceived counts offers Mesos sent.
	OffersReceived = metrics.NewCounter(&metrics.CounterOpts{Subsystem: subsystem, Name: "offers_received_total", Help: "Offers received from Mesos.", StabilityLevel: metrics.ALPHA})
	// OffersDeclined counts offers handed back unused.
	OffersDeclined = metrics.NewCounter(&metrics.CounterOpts{Subsystem: subsystem, Name: "offers_declined_total", Help: "Offers declined because no pod needed them.", StabilityLevel: metrics.ALPHA})
	// OffersRescinded counts offers Mesos took back.
	OffersRescinded = metrics.NewCounter(&metrics.CounterOpts{Subsystem: subsystem, Name: "offers_rescinded_total", Help: "Offers rescinded by Mesos.", StabilityLevel: metrics.ALPHA})
	// OffersHeld is the number of offers in the cache.
	OffersHeld = metrics.NewGauge(&metrics.GaugeOpts{Subsystem: subsystem, Name: "offers_held", Help: "Offers currently held by the broker.", StabilityLevel: metrics.ALPHA})
	// OffersHeldForPending is the number of offers kept past --decline-after
	// because a pending pod could use them.
	OffersHeldForPending = metrics.NewGauge(&metrics.GaugeOpts{Subsystem: subsystem, Name: "offers_held_for_pending", Help: "Offers kept past --decline-after because a pending pod could use them (up to --hold-offers-while-pending).", StabilityLevel: metrics.ALPHA})
	// Reservations counts Reserve outcomes.
	Reservations = metrics.NewCounterVec(&metrics.CounterOpts{Subsystem: subsystem, Name: "reservations_total", Help: "Reservations, by result (lost, expired).", StabilityLevel: metrics.ALPHA}, []string{"result"})
	// LaunchLatency is the time of one ACCEPT round trip.
	LaunchLatency = metrics.NewHistogram(&metrics.HistogramOpts{Subsystem: subsystem, Name: "launch_duration_seconds", Help: "Time to ACCEPT offers with LAUNCH operations.", Buckets: metrics.ExponentialBuckets(0.001, 2, 14), StabilityLevel: metrics.ALPHA})
	// LaunchPhases splits one pod's Launch (the plugin's launch phase less
	// the gRPC round trip): admit, from the Launch call to the pod joining
	// its agent's batch (the reservation and in-doubt checks); batch_wait,
	// in the batch until it is flushed (the batch window, or the other
	// reservations of the agent asking); accept, from the flush to the
	// answer (the offers' take and the ACCEPT call, whose own time
	// launch_duration_seconds has per call). One observation per pod.
	LaunchPhases = metrics.NewHistogramVec(&metrics.HistogramOpts{Subsystem: subsystem, Name: "launch_phase_duration_seconds", Help: "Duration of each phase of one pod's Launch (admit, batch_wait, accept).", Buckets: metrics.ExponentialBuckets(0.0001, 2, 17), StabilityLevel: metrics.ALPHA}, []string{"phase"})
	// Launches counts launched tasks by result.
	Launches = metrics.NewCounterVec(&metrics.CounterOpts{Subsystem: subsystem, Name: "tasks_launched_total", Help: "Tasks sent in LAUNCH operations, by result.", StabilityLevel: metrics.ALPHA}, []string{"result"})
	// Acks counts acknowledged status updates.
	Acks = metrics.NewCounterVec(&metrics.CounterOpts{Subsystem: subsystem, Name: "status_acknowledgements_total", Help: "ACKNOWLEDGE calls for status updates, by result.", StabilityLevel: metrics.ALPHA}, []string{"result"})
	// Updates counts status updates by task state.
	Updates = metrics.NewCounterVec(&metrics.CounterOpts{Subsystem: subsystem, Name: "status_updates_total", Help: "Task status updates received, by state.", StabilityLevel: metrics.ALPHA}, []string{"state"})
	// ReconcileRuns counts reconciliations.
	ReconcileRuns = metrics.NewCounterVec(&metrics.CounterOpts{Subsystem: subsystem, Name: "reconcile_runs_total", Help: "Task reconciliations, by kind (explicit, implicit) and result.", StabilityLevel: metrics.ALPHA}, []string{"kind", "result"})
	// Subscriptions counts SUBSCRIBE attempts.
	Subscriptions = metrics.NewCounterVec(&metrics.CounterOpts{Subsystem: subsystem, Name: "subscriptions_total", Help: "SUBSCRIBE attempts, by result.", StabilityLevel: metrics.ALPHA}, []string{"result"})
	// Connected is 1 while subscribed.
	Connected = metrics.NewGauge(&metrics.GaugeOpts{Subsystem: subsystem, Name: "mesos_connected", Help: "1 while the broker holds a Mesos subscription.", StabilityLevel: metrics.ALPHA})
	// Leader is 1 while this replica leads.
	Leader = metrics.NewGauge(&metrics.GaugeOpts{Subsystem: subsystem, Name: "leader", Help: "1 while this broker replica is the elected leader.", StabilityLevel: metrics.ALPHA})
	// Suppressed is 1 while offers are suppressed.
	Suppressed = metrics.NewGauge(&metrics.GaugeOpts{Subsystem: subsystem, Name: "offers_suppressed", Help: "1 while the framework has SUPPRESSed offers (no pod pending).", StabilityLevel: metrics.ALPHA})
	// Kills counts KILL calls.
	Kills = metrics.NewCounterVec(&metrics.CounterOpts{Subsystem: subsystem, Name: "task_kills_total", Help: "KILL calls, by reason.", StabilityLevel: metrics.ALPHA}, []string{"reason"})
	// TaskLaunchTimeouts counts tasks killed because Mesos kept them
	// TASK_STAGING past --task-launch-timeout.
	TaskLaunchTimeouts = metrics.NewCounter(&metrics.CounterOpts{Subsystem: subsystem, Name: "task_launch_timeouts_total", Help: "Tasks killed because they were still TASK_STAGING --task-launch-timeout after their pod was bound (their pods fail with reason MesosTaskLaunchTimeout).", StabilityLevel: metrics.ALPHA})
	// NodeHostnameClashes counts agents not mirrored because their
	// hostname is a Node the broker did not create.
	NodeHostnameClashes = metrics.NewCounter(&metrics.CounterOpts{Subsystem: subsystem, Name: "node_hostname_clashes_total", Help: "Mesos agents not mirrored as Nodes because a Node of their hostname exists that the broker did not create.", StabilityLevel: metrics.ALPHA})
)

var once sync.Once

// Register adds the broker's metrics to the legacy registry (idempotent).
func Register() {
	once.Do(func() {
		for _, m := range []metrics.Registerable{OffersReceived, OffersDeclined, OffersRescinded, OffersHeld, OffersHeldForPending, Reservations, LaunchLatency, LaunchPhases, Launches, Acks, Updates, ReconcileRuns, Subscriptions, Connected, Leader, Suppressed, Kills, TaskLaunchTimeouts, NodeHostnameClashes} {
			legacyregistry.MustRegister(m)
		}
	})
}
