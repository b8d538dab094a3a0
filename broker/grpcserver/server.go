// Package grpcserver serves the Broker API (proto/broker/v1): it decodes and
// validates requests, hands them to the offer cache (watch, reserve) and the
// launcher (launch, kill), and maps their errors to gRPC status codes.
// Everything that talks to Mesos sits behind the launcher, so the server can
// be tested, and run in the local cluster, without a master.
package grpcserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
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

	"github.com/k8sm/k8sm/broker/launch"
	"github.com/k8sm/k8sm/broker/offers"
	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/rolepolicy"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

const errNotServing = "this broker replica is not serving offers (not the elected leader, not subscribed to Mesos, or the master has not yet answered its reconciliation): watch the one whose health is SERVING"

// Launcher launches reserved pods and kills their tasks (*launch.Launcher).
type Launcher interface {
	Launch(ctx context.Context, reservationID string, pod *v1.Pod, data []byte) (launch.Launched, error)
	Kill(ctx context.Context, uid types.UID, agentID string) (taskID string, err error)
}

// Server implements brokerv1.BrokerServer.
type Server struct {
	brokerv1.UnimplementedBrokerServer

	cache    *offers.Cache
	launcher Launcher
	health   *health.Server
	decoder  runtime.Decoder
	policy   rolepolicy.Source
	// chunkBytes bounds a snapshot chunk (SnapshotChunkBytes).
	chunkBytes int

	mu      sync.Mutex
	serving bool
	// unserved is closed when the server stops serving, ending the watches
	// opened while it served.
	unserved chan struct{}
}

// New returns a server over cache; it reports NOT_SERVING until SetServing.
func New(cache *offers.Cache, launcher Launcher) *Server {
	scheme := runtime.NewScheme()
	_ = v1.AddToScheme(scheme)
	s := &Server{
		cache:    cache,
		launcher: launcher,
		health:   health.NewServer(),
		decoder:  serializer.NewCodecFactory(scheme).UniversalDeserializer(),
		policy:   rolepolicy.Static(rolepolicy.Default()),
		// 10,000 agents are about 1 MB of Agent messages: a few chunks,
		// each far below gRPC's default 4 MiB receive limit.
		chunkBytes: 256 << 10,
	}
	s.SetServing(false)
	return s
}

// SetSnapshotChunkBytes bounds the size of each chunk a WatchOffers snapshot
// is sent in (an agent bigger than that still goes, alone in its chunk).
func (s *Server) SetSnapshotChunkBytes(n int) { s.chunkBytes = n }

// SetRolePolicy makes Reserve and Launch apply p (the built-in default
// policy until then). The scheduler plugin applies the same policy; the
// broker applies it again because it is the one that hands out resources.
func (s *Server) SetRolePolicy(p rolepolicy.Source) { s.policy = p }

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
		if ev.Type == offers.EventSnapshot {
			err = sendSnapshot(stream.Send, ev, s.cache.Epoch(), s.chunkBytes)
		} else {
			err = stream.Send(eventToProto(ev))
		}
		if err != nil {
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
	// Launch is not refused so: a retry of a launch already on its way
	// must get its outcome, not a second attempt.
	s.mu.Lock()
	serving := s.serving
	s.mu.Unlock()
	if !serving {
		return nil, status.Error(codes.Unavailable, errNotServing)
	}
	d, err := brokerapi.DemandFromProto(req.GetDemand())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "demand of pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	// The roles the pod may draw from are the policy's for its namespace,
	// narrowed by what it asked for.
	if d.Roles, err = s.policy.Current().Resolve(pod.Namespace, d.Roles); err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "reserving for pod %s/%s: %v", pod.Namespace, pod.Name, err)
	}
	var ttl time.Duration
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
		}
		ttl = req.GetTtl().AsDuration()
	}
	r, err := s.cache.Reserve(offers.ReserveRequest{Pod: pod, AgentID: req.GetAgentId(), NodeName: req.GetNodeName(), Demand: d, TTL: ttl, Epoch: req.GetEpoch()})
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
// The pod arrives in its final shape; its JSON becomes the task's data as it
// was sent, and only a pod sent in another encoding is encoded again.
func (s *Server) Launch(ctx context.Context, req *brokerv1.LaunchRequest) (*brokerv1.LaunchResponse, error) {
	id := req.GetReservationId()
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "reservation_id is required")
	}
	obj, _, err := s.decoder.Decode(req.GetPod(), nil, &v1.Pod{})
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "decoding the pod of reservation %s (%s): %v", id, req.GetPodContentType(), err)
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return nil, status.Errorf(codes.InvalidArgument, "reservation %s: expected a Pod, got %T", id, obj)
	}
	if err := s.checkLaunch(id, pod); err != nil {
		return nil, err
	}
	data := req.GetPod()
	if !isJSON(req.GetPodContentType(), data) {
		pd, err := taskinfo.EncodePod(pod)
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "reservation %s: %v", id, err)
		}
		data = pd.JSON
	}
	res, err := s.launcher.Launch(ctx, id, pod, data)
	if err != nil {
		return nil, toStatus(err)
	}
	return &brokerv1.LaunchResponse{TaskId: res.TaskID, AgentId: res.AgentID, BatchSize: int32(res.BatchSize), NodeName: res.Hostname, ResourceVersion: res.ResourceVersion}, nil
}

// checkLaunch refuses a pod whose annotations are bad, that is not the
// reservation's (the launcher checks its uid and node), or whose namespace
// may not use the reservation's role under the policy in force now: it may
// have changed since Reserve.
func (s *Server) checkLaunch(id string, pod *v1.Pod) error {
	if err := podresources.ValidateAnnotations(pod); err != nil {
		return status.Errorf(codes.InvalidArgument, "reservation %s: pod %s/%s: %v", id, pod.Namespace, pod.Name, err)
	}
	r, err := s.cache.Get(id)
	if err != nil || r.Pod.UID != pod.UID {
		return nil // the launcher says why, with the same checks
	}
	if pod.Namespace != r.Pod.Namespace || pod.Name != r.Pod.Name {
		return status.Errorf(codes.InvalidArgument, "reservation %s belongs to pod %s/%s, the pod sent is %s/%s", id, r.Pod.Namespace, r.Pod.Name, pod.Namespace, pod.Name)
	}
	if err := s.policy.Current().Check(pod.Namespace, r.Role); err != nil {
		s.cache.Unreserve(id, "")
		return status.Errorf(codes.PermissionDenied, "launching reservation %s of pod %s/%s: %v", id, pod.Namespace, pod.Name, err)
	}
	return nil
}

// isJSON reports whether a pod the decoder read is JSON, which the task
// carries as it is (the universal decoder also reads protobuf and YAML).
func isJSON(contentType string, data []byte) bool {
	switch contentType {
	case runtime.ContentTypeJSON:
		return true
	case "":
		trimmed := bytes.TrimLeft(data, " \t\r\n")
		return len(trimmed) > 0 && trimmed[0] == '{'
	}
	return false
}

// Kill kills a pod's task and drops any claim the pod still holds.
func (s *Server) Kill(ctx context.Context, req *brokerv1.KillRequest) (*brokerv1.KillResponse, error) {
	uid := types.UID(req.GetPod().GetUid())
	if uid == "" {
		return nil, status.Error(codes.InvalidArgument, "pod.uid is required")
	}
	task, err := s.launcher.Kill(ctx, uid, req.GetAgentId())
	if err != nil {
		return nil, toStatus(fmt.Errorf("pod %s/%s: %w", req.GetPod().GetNamespace(), req.GetPod().GetName(), err))
	}
	return &brokerv1.KillResponse{TaskId: task}, nil
}

func podRef(p *brokerv1.PodRef) offers.PodRef {
	return offers.PodRef{UID: types.UID(p.GetUid()), Namespace: p.GetNamespace(), Name: p.GetName()}
}

// toStatus maps the cache's and the launcher's errors to gRPC codes; the
// message keeps the whole chain so that a person reading it knows what was
// being done.
func toStatus(err error) error {
	code := codes.Internal
	var mesosErr *launch.MesosError
	switch {
	case errors.As(err, &mesosErr):
		// Mesos's own timeouts included: the broker could not reach it.
		// The detail tells the plugin it is the master, not the broker,
		// that did not answer.
		st := status.New(codes.Unavailable, err.Error())
		if withInfo, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: brokerv1.ReasonMesosUnavailable, Domain: brokerv1.ErrorDomain}); derr == nil {
			st = withInfo
		}
		return st.Err()
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, offers.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, offers.ErrUnknownAgent), errors.Is(err, offers.ErrUnknownReservation):
		code = codes.NotFound
	case errors.Is(err, offers.ErrInsufficient):
		code = codes.ResourceExhausted
	case errors.Is(err, offers.ErrExpired), errors.Is(err, offers.ErrReleased), errors.Is(err, offers.ErrStaleEpoch):
		code = codes.FailedPrecondition
	case errors.Is(err, offers.ErrLost), errors.Is(err, launch.ErrEarlierAttempt):
		// The pod is scheduled again (a reservation spent, an earlier
		// attempt being killed first).
		code = codes.Aborted
	case errors.Is(err, offers.ErrLaunched):
		code = codes.AlreadyExists
	}
	if code == codes.Internal {
		klog.ErrorS(err, "Broker request failed")
	}
	return status.Error(code, err.Error())
}
