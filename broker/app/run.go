package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"k8s.io/client-go/informers"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/broker/framework"
	"github.com/k8sm/k8sm/broker/grpcserver"
	"github.com/k8sm/k8sm/broker/hostprivate"
	"github.com/k8sm/k8sm/broker/launch"
	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	"github.com/k8sm/k8sm/broker/metrics"
	"github.com/k8sm/k8sm/broker/nodes"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/broker/pods"
	brokerzk "github.com/k8sm/k8sm/broker/zk"
	"github.com/k8sm/k8sm/pkg/failpoint"
	"github.com/k8sm/k8sm/pkg/podresources"
)

// Run runs the broker until ctx ends or leadership is lost.
func (c *Config) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	o := c.Options
	applyMemoryLimit(logger, c.MemoryLimit, c.MemoryLimitSource)
	if o.FailpointsDir != "" {
		logger.Info("Failpoints armed through a directory: for tests only", "dir", o.FailpointsDir)
		failpoint.Enable(o.FailpointsDir)
	}
	metrics.Register()
	var health readiness
	ready := &health.subscribed
	var wg sync.WaitGroup
	// Deferred first, so it runs last: after cancel and the servers' stops.
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.HTTPListener != nil {
		hs := &http.Server{Handler: newHTTPHandler(ctx, &health, o.EnablePprof), ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() { defer wg.Done(); _ = hs.Serve(c.HTTPListener) }()
		defer func() { _ = hs.Close() }()
		logger.Info("Serving metrics and health", "address", c.HTTPListener.Addr().String())
	}
	if c.ExecutorListener != nil {
		// Every replica serves, so that agents reach it through any.
		es := &http.Server{Handler: c.ExecutorBinary, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() { defer wg.Done(); _ = es.Serve(c.ExecutorListener) }()
		defer func() { _ = es.Close() }()
		logger.Info("Serving the executor binary", "address", c.ExecutorListener.Addr().String(),
			"uri", c.ExecutorBinary.URI(o.ExecutorURLBase).Value, "sha256", c.ExecutorBinary.SHA256())
	}

	var sess, masterSess *brokerzk.Session
	if len(c.ZKServers) > 0 {
		var err error
		if sess, err = brokerzk.ConnectAs(ctx, c.ZKServers, 0, c.ZKAuth); err != nil {
			return fmt.Errorf("--zk: %w", err)
		}
		defer sess.Close()
		masterSess = sess
	}
	if len(c.MasterZKServers) > 0 && (!slices.Equal(c.MasterZKServers, c.ZKServers) || c.MasterZKAuth != c.ZKAuth) {
		var err error
		if masterSess, err = brokerzk.ConnectAs(ctx, c.MasterZKServers, 0, c.MasterZKAuth); err != nil {
			return fmt.Errorf("--master: %w", err)
		}
		defer masterSess.Close()
	}

	cache := offers.New(offers.Config{Executor: c.Executor, DefaultTTL: o.DefaultTTL, MaxTTL: o.MaxTTL, DeclineAfter: o.DeclineAfter, HoldWhilePending: o.HoldWhilePending, RefuseSeconds: o.RefuseSeconds,
		PodDefaults: podresources.Scalars{CPUs: podresources.MilliFromFloat(o.DefaultPodCPUs), MemMB: podresources.MilliFromFloat(o.DefaultPodMemMB)}})
	var store brokermesos.IDStore = &brokermesos.MemoryIDStore{}
	if sess != nil {
		store = brokerzk.NewFrameworkIDStore(sess, c.ZKPath)
	} else {
		logger.Info("No ZooKeeper for the broker's state: the framework id lives in memory only, and a restarted broker registers a new framework", "flag", "--zk")
	}
	detector, runDetector := c.detector(masterSess)
	client, err := brokermesos.New(brokermesos.Config{
		Detector: detector, Framework: c.Framework, Store: store, Secret: c.Secret, TLS: c.MasterTLS,
		MediaType: c.MediaType, MissedHeartbeats: o.MissedHeartbeats,
	})
	if err != nil {
		return err
	}
	lastErr := client.LastError
	health.subscribeError.Store(&lastErr)
	// One Node informer for the mirror and the pod controller.
	nodeInformers := informers.NewSharedInformerFactoryWithOptions(c.Kube, 0, informers.WithTransform(nodes.StripNode))
	nodeInformer := nodeInformers.Core().V1().Nodes()
	// The mirror stands in for the kubelets of agents without one: all its
	// requests grow with the agents, none belongs under --kube-api-qps.
	mirror := nodes.New(nodes.Config{Client: c.Heartbeats, Nodes: nodeInformer, Cache: cache,
		LeaseDuration: o.NodeLeaseDuration, Workers: int(o.NodeSyncWorkers), Agents: client, AgentListInterval: o.AgentListInterval})
	// The pod controller drives the driver; the framework reports to the
	// controller and keeps the driver told.
	driver := framework.NewDriver(client, o.Roles)
	podc := pods.New(pods.Config{
		KubeletRuns: mirror.KubeletRuns, Nodes: nodeInformer,
		Client: c.Kube, SchedulerName: o.SchedulerName, Framework: driver, Workers: int(o.PodSyncWorkers),
		PendingDemands: cache.SetPendingDemands, RolePolicy: c.RolePolicy, Reconciled: ready.Load,
		LaunchTimeout: o.TaskLaunchTimeout,
		AgentHostname: func(id string) (string, bool) {
			host, ok := cache.AgentHostname(id)
			return host, ok && host != ""
		},
	})
	// The gRPC health and /readyz follow the subscription, once its
	// reconciliation was answered: the scheduler plugin must not reserve
	// against a broker without offers, nor one that does not know yet of
	// the tasks an earlier process launched (framework.Config.Serving).
	var srv *grpcserver.Server
	fw := framework.New(framework.Config{
		Cache: cache, Caller: client, Driver: driver, FrameworkID: client.FrameworkID, Builder: c.Builder,
		Roles: o.Roles, Executor: c.Executor, RefuseSeconds: o.RefuseSeconds, ReconcileInterval: o.ReconcileInterval,
		Tasks: podc, Status: podc, Agents: mirror,
		Serving: func(serving bool) {
			srv.SetServing(serving)
			ready.Store(serving)
		},
	})
	// Host-private Services' EndpointSlices, from the same pods.
	hostPrivate := hostprivate.New(hostprivate.Config{Client: c.Kube, Pods: podc.PodInformer()})
	synced := func() bool { return podc.HasSynced() && hostPrivate.HasSynced() }
	health.informersSynced.Store(&synced)
	srv = grpcserver.New(cache, launch.New(cache, fw, launch.Options{BatchWindow: o.BatchWindow, AgentHostname: mirror.AgentHostname}))
	srv.SetRolePolicy(c.RolePolicy)
	g := grpc.NewServer(c.GRPCServerOptions...)
	srv.Register(g)
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.Serve(c.GRPCListener) }()
	defer g.Stop()
	defer srv.Shutdown()
	logger.Info("Serving the Broker gRPC service (NOT_SERVING until leading, subscribed and reconciled)", "address", c.GRPCListener.Addr().String(), "mutualTLS", o.GRPC.tls())

	lctx := ctx
	if o.LeaderElect {
		if sess == nil {
			return errors.New("--leader-elect needs ZooKeeper (--zk)")
		}
		logger.Info("Running for broker leadership", "identity", o.Identity)
		if lctx, err = brokerzk.Elect(ctx, sess, path.Join(c.ZKPath, "leader"), o.Identity); err != nil {
			if ctx.Err() != nil {
				return nil // shut down while waiting: not a failure
			}
			return fmt.Errorf("electing the broker leader: %w", err)
		}
		metrics.Leader.Set(1)
		defer metrics.Leader.Set(0)
	}

	// Mesos failing the framework over to another scheduler ends the
	// leadership as ZooKeeper's loss does: another broker leads.
	lctx, stepDown := context.WithCancelCause(lctx)
	defer stepDown(nil)
	// Kubernetes writes pass only while this term lasts (leadergate).
	lctx = c.Gate.Lead(lctx)
	run := func(f func(context.Context)) {
		wg.Add(1)
		go func() { defer wg.Done(); f(lctx) }()
	}
	nodeInformers.Start(lctx.Done())
	run(runDetector)
	run(podc.Run)
	run(hostPrivate.Run)
	run(fw.Run)
	run(driver.Run)
	run(mirror.Run)
	run(func(ctx context.Context) {
		if err := client.Run(ctx, fw); errors.Is(err, brokermesos.ErrFailedOver) {
			stepDown(err)
		}
	})
	<-lctx.Done()
	srv.SetServing(false)
	ready.Store(false)
	if ctx.Err() == nil {
		if cause := context.Cause(lctx); errors.Is(cause, brokermesos.ErrFailedOver) {
			return fmt.Errorf("broker %s: %w: %w", o.Identity, errLeadershipLost, cause)
		}
		return fmt.Errorf("broker %s: %w", o.Identity, errLeadershipLost)
	}
	return nil
}
