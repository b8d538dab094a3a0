// Package grpcserver serves the Broker API (proto/broker/v1) over the offer
// cache. Everything that talks to Mesos sits behind the Launcher interface, so
// the server can be tested, and run in the local cluster, without a master.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

const errNotServing = "this broker replica is not serving offers (not the elected leader, or not subscribed to Mesos): watch the one whose health is SERVING"

// Launcher is the Mesos side of Launch and Kill.
type Launcher interface {
	// Launch sends one ACCEPT of l.OfferIDs with one LAUNCH per task (and
	// the executor where l.Executor says so). pods holds each task's pod, by
	// reservation id, as the scheduler sent it: it becomes the task's data.
	// It returns once Mesos accepted the call (202).
	Launch(ctx context.Context, l *offers.Launch, pods map[string]*v1.Pod) error
	// Kill kills a task; agentID may be empty when unknown.
	Kill(ctx context.Context, taskID, agentID string) error
}

// Options tune the server; zero fields take defaults.
type Options struct {
	// BatchWindow is how long a Launch waits for the other pods reserved on
	// the same agent to launch with it in one ACCEPT (default 100ms). The
	// window closes early once every reservation of the agent has asked.
	BatchWindow time.Duration
	// MaxBatchWait bounds how long a batch waits, window after window, for
	// the launches of reservations already made on its agent (default 10
	// windows). One that asks later than that finds its reservation lost
	// (Aborted): the ACCEPT took its offer.
	MaxBatchWait time.Duration
	// LaunchTimeout bounds one ACCEPT (default 30s).
	LaunchTimeout time.Duration
	Clock         clock.WithDelayedExecution
}

// Server implements brokerv1.BrokerServer.
type Server struct {
	brokerv1.UnimplementedBrokerServer

	cache    *offers.Cache
	launcher Launcher
	opts     Options
	health   *health.Server
	batches  *batcher
	decoder  runtime.Decoder

	mu      sync.Mutex
	serving bool
	// unserved is closed when the server stops serving, ending the watches
	// opened while it served.
	unserved chan struct{}
}

// New returns a server over cache; it reports NOT_SERVING until SetServing.
func New(cache *offers.Cache, launcher Launcher, opts Options) *Server {
	if opts.BatchWindow <= 0 {
		opts.BatchWindow = 100 * time.Millisecond
	}
	if opts.MaxBatchWait <= 0 {
		opts.MaxBatchWait = 10 * opts.BatchWindow
	}
	if opts.LaunchTimeout <= 0 {
		opts.LaunchTimeout = 30 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	scheme := runtime.NewScheme()
	_ = v1.AddToScheme(scheme)
	s := &Server{
		cache:    cache,
		launcher: launcher,
		opts:     opts,
		health:   health.NewServer(),
		decoder:  serializer.NewCodecFactory(scheme).UniversalDeserializer(),
	}
	s.batches = newBatcher(s)
	s.SetServing(false)
	return s
}

// Register adds the Broker and the standard health service to g.
func (s *Server) Register(g *grpc.Server) {
	brokerv1.RegisterBrokerServer(g, s)
	healthpb.RegisterHealthServer(g, s.health)
}

// SetServing flips the health status; only the elected leader serves. When
// it stops serving (leadership or the Mesos subscription lost) every
// WatchOffers stream ends with Unavailable: a plugin that kept watching a
// former leader would schedule against offers nobody holds any more, and
// ending the stream makes it reconnect, to whichever replica serves.
func (s *Server) SetServing(serving bool) {
	s.mu.Lock()
	switch {
	case serving && !s.serving:
		s.unserved = make(chan struct{})
	case !serving && s.serving:
		close(s.unserved)
	}
	s.serving = serving
	s.mu.Unlock()
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
	s.health.SetServingStatus(brokerapi.ServiceName, st)
}

// Shutdown makes health report NOT_SERVING for good, ending health watches.
func (s *Server) Shutdown() { s.health.Shutdown() }

// WatchOffers streams a snapshot and then deltas until the client goes away.
func (s *Server) WatchOffers(_ *brokerv1.WatchOffersRequest, stream grpc.ServerStreamingServer[brokerv1.WatchOffersResponse]) error {
	s.mu.Lock()
	serving, unserved := s.serving, s.unserved
	s.mu.Unlock()
	if !serving {
		return status.Error(codes.Unavailable, errNotServing)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-unserved:
			cancel()
		case <-ctx.Done():
		}
	}()
	w := s.cache.Watch()
	defer w.Stop()
	for {
		ev, err := w.Next(ctx)
		if err != nil {
			select {
			case <-unserved:
				return status.Error(codes.Unavailable, errNotServing)
			default:
			}
			return status.FromContextError(err).Err()
		}
		if err := stream.Send(eventToProto(ev)); err != nil {
			return err
		}
	}
}

// Reserve claims resources for a pod.
func (s *Server) Reserve(ctx context.Context, req *brokerv1.ReserveRequest) (*brokerv1.ReserveResponse, error) {
	pod := podRef(req.GetPod())
	if pod.UID == "" {
		return nil, status.Error(codes.InvalidArgument, "pod.uid is required")
	}
	d, err := brokerapi.DemandFromProto(req.GetDemand())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "demand of pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	var ttl time.Duration
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
		}
		ttl = req.GetTtl().AsDuration()
	}
	r, err := s.cache.Reserve(offers.ReserveRequest{Pod: pod, AgentID: req.GetAgentId(), NodeName: req.GetNodeName(), Demand: d, TTL: ttl})
	if err != nil {
		return nil, toStatus(fmt.Errorf("reserving on node %q for pod %s/%s: %w", req.GetNodeName(), pod.Namespace, pod.Name, err))
	}
	return &brokerv1.ReserveResponse{Reservation: reservationToProto(r), ResourceVersion: r.AgentVersion}, nil
}

// Unreserve releases a reservation.
func (s *Server) Unreserve(ctx context.Context, req *brokerv1.UnreserveRequest) (*brokerv1.UnreserveResponse, error) {
	uid := types.UID(req.GetPod().GetUid())
	if req.GetReservationId() == "" && uid == "" {
		return nil, status.Error(codes.InvalidArgument, "reservation_id or pod.uid is required")
	}
	return &brokerv1.UnreserveResponse{Released: s.cache.Unreserve(req.GetReservationId(), uid)}, nil
}

// Launch starts a reserved pod, batched with the agent's other launches.
func (s *Server) Launch(ctx context.Context, req *brokerv1.LaunchRequest) (*brokerv1.LaunchResponse, error) {
	id := req.GetReservationId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "reservation_id is required")
	}
	r, err := s.cache.Get(id)
	if err != nil {
		return nil, toStatus(fmt.Errorf("launching reservation %s: %w", id, err))
	}
	obj, _, err := s.decoder.Decode(req.GetPod(), nil, &v1.Pod{})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decoding the pod of reservation %s (%s): %v", id, req.GetPodContentType(), err)
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "reservation %s: expected a Pod, got %T", id, obj)
	}
	if pod.UID != r.Pod.UID {
		return nil, status.Errorf(codes.InvalidArgument, "reservation %s belongs to pod uid %s, the pod sent has uid %q", id, r.Pod.UID, pod.UID)
	}
	res := s.batches.submit(ctx, r, pod)
	if res.err != nil {
		return nil, res.err
	}
	return &brokerv1.LaunchResponse{TaskId: taskinfo.TaskID(r.Pod.UID), AgentId: r.AgentID, BatchSize: int32(res.batchSize)}, nil
}

// Kill kills a pod's task and drops any claim the pod still holds.
func (s *Server) Kill(ctx context.Context, req *brokerv1.KillRequest) (*brokerv1.KillResponse, error) {
	uid := types.UID(req.GetPod().GetUid())
	if uid == "" {
		return nil, status.Error(codes.InvalidArgument, "pod.uid is required")
	}
	s.cache.Unreserve("", uid)
	task := taskinfo.TaskID(uid)
	if err := s.launcher.Kill(ctx, task, req.GetAgentId()); err != nil {
		return nil, status.Errorf(codes.Unavailable, "killing task %s of pod %s/%s: %v", task, req.GetPod().GetNamespace(), req.GetPod().GetName(), err)
	}
	return &brokerv1.KillResponse{TaskId: task}, nil
}

func podRef(p *brokerv1.PodRef) offers.PodRef {
	return offers.PodRef{UID: types.UID(p.GetUid()), Namespace: p.GetNamespace(), Name: p.GetName()}
}

// toStatus maps the cache's errors to gRPC codes; the message keeps the whole
// chain so that a person reading it knows what was being done.
func toStatus(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, offers.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, offers.ErrUnknownAgent), errors.Is(err, offers.ErrUnknownReservation):
		code = codes.NotFound
	case errors.Is(err, offers.ErrInsufficient):
		code = codes.ResourceExhausted
	case errors.Is(err, offers.ErrExpired), errors.Is(err, offers.ErrReleased):
		code = codes.FailedPrecondition
	case errors.Is(err, offers.ErrLost):
		code = codes.Aborted
	case errors.Is(err, offers.ErrLaunched):
		code = codes.AlreadyExists
	}
	if code == codes.Internal {
		klog.ErrorS(err, "Broker request failed")
	}
	return status.Error(code, err.Error())
}
