package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"sync/atomic"

	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/component-base/metrics/legacyregistry"
	// client-go's rest_client_* and workqueue_* metrics in the legacy
	// registry, as every Kubernetes component serves them.
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/workqueue"
)

// readiness is what /readyz checks; Run fills it in as it builds the parts.
type readiness struct {
	// subscribed while the broker holds a Mesos subscription whose
	// reconciliation the master answered: the scheduler plugin must not
	// reserve against a broker without offers, nor one that does not know
	// yet of the tasks an earlier process launched.
	subscribed atomic.Bool
	// informersSynced reports whether the pod, Node, Service and
	// host-private EndpointSlice informers are in
	// sync; nil until they exist (they start when this replica leads).
	informersSynced atomic.Pointer[func() bool]
	// subscribeError says why the last subscription attempt failed (a
	// refused secret, an untrusted certificate); nil until the client exists.
	subscribeError atomic.Pointer[func() error]
}

func (r *readiness) checks(ctx context.Context) []healthz.HealthChecker {
	return []healthz.HealthChecker{
		healthz.NewShutdownHealthz(ctx.Done()),
		healthz.NamedCheck("informer-sync", func(*http.Request) error {
			if f := r.informersSynced.Load(); f == nil || !(*f)() {
				return errors.New("the pod and Node informers are not in sync (not the leader, or still listing)")
			}
			return nil
		}),
		healthz.NamedCheck("mesos-subscription", func(*http.Request) error {
			if !r.subscribed.Load() {
				if f := r.subscribeError.Load(); f != nil {
					if err := (*f)(); err != nil {
						return fmt.Errorf("not subscribed to Mesos: %w", err)
					}
				}
				return errors.New("not subscribed to Mesos (not the leader, or no master), or the master has not yet answered the reconciliation after subscribing")
			}
			return nil
		}),
	}
}

// newHTTPHandler serves /metrics, /healthz and /livez (the process
// answers), /readyz (leading, in sync and subscribed; ?verbose lists the
// checks, /readyz/<check> runs one) and, with enablePprof, /debug/pprof.
func newHTTPHandler(ctx context.Context, r *readiness, enablePprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", legacyregistry.Handler())
	healthz.InstallHandler(mux, healthz.PingHealthz)
	healthz.InstallLivezHandler(mux, healthz.PingHealthz)
	healthz.InstallReadyzHandler(mux, r.checks(ctx)...)
	if enablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}
