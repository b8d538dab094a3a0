// Package mesosoffers is the MesosOffers scheduler plugin: it places pods only
// where outstanding Mesos offers hold them, claims the resources in its own
// offer mirror in Reserve (sending the k8sm broker's Reserve without waiting)
// and, in Bind, awaits the broker's answer and launches the pod as a Mesos
// task.
//
// The plugin keeps a local mirror of the broker's offer view through the
// WatchOffers stream, so PreFilter and Filter never call the broker. When new
// offers arrive, pods it turned away are activated at once: offers are not
// Kubernetes objects, so no cluster event would requeue them. PreEnqueue
// keeps a pod no offer holds out of the active queue meanwhile, for the
// plugin's preemptionDelay at most (preenqueue.go).
package mesosoffers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/features"

	"github.com/k8sm/k8sm/pkg/brokerapi"
	"github.com/k8sm/k8sm/pkg/failpoint"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/rolepolicy"
	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// Name is the plugin's name in the registry and in configurations.
const Name = "MesosOffers"

const (
	demandKey      fwk.StateKey = Name + "/demand"
	reservationKey fwk.StateKey = Name + "/reservation"
	podJSON                     = "application/json"
)

// MesosOffers implements the plugin.
type MesosOffers struct {
	handle fwk.Handle
	args   *Args
	conn   *grpc.ClientConn
	client brokerv1.BrokerClient
	mirror *mirror
	parked *parked
	// waiters holds pods back from preempting until they waited for offers.
	waiters *waiters
	// inflight are the broker Reserves not answered yet.
	inflight brokerClaims
	// priorities finds the nodes where a pod could preempt.
	priorities *priorities
	policy     rolepolicy.Source
	// comparisonOperators follows the TaintTolerationComparisonOperators
	// feature gate, as the stock TaintToleration filter does.
	comparisonOperators bool
}

var (
	_ fwk.PreFilterPlugin   = &MesosOffers{}
	_ fwk.PostFilterPlugin  = &MesosOffers{}
	_ fwk.FilterPlugin      = &MesosOffers{}
	_ fwk.ReservePlugin     = &MesosOffers{}
	_ fwk.BindPlugin        = &MesosOffers{}
	_ fwk.EnqueueExtensions = &MesosOffers{}
	_ fwk.PreEnqueuePlugin  = &MesosOffers{}
	_ fwk.SignPlugin        = &MesosOffers{}
)

// New is the plugin factory for app.WithPlugin. The watch lives as long as
// ctx, which the scheduler cancels when it stops.
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args, err := argsFrom(obj)
	if err != nil {
		return nil, err
	}
	policy, err := rolepolicy.NewSource(args.RolePolicyFile)
	if err != nil {
		return nil, fmt.Errorf("%s args: rolePolicyFile: %w", Name, err)
	}
	conn, err := dial(args)
	if err != nil {
		return nil, fmt.Errorf("connecting to the k8sm broker at %v: %w", args.BrokerAddresses, err)
	}
	RegisterMetrics()
	pl := newWithConn(ctx, args, h, conn)
	pl.policy = policy
	return pl, nil
}

func newWithConn(ctx context.Context, args *Args, h fwk.Handle, conn *grpc.ClientConn) *MesosOffers {
	logger := klog.FromContext(ctx).WithValues("plugin", Name)
	ctx = klog.NewContext(ctx, logger)
	pl := &MesosOffers{
		handle:              h,
		args:                args,
		conn:                conn,
		client:              brokerv1.NewBrokerClient(conn),
		comparisonOperators: utilfeature.DefaultFeatureGate.Enabled(features.TaintTolerationComparisonOperators),
		policy:              rolepolicy.Static(rolepolicy.Default()),
		priorities:          newPriorities(),
	}
	pl.mirror = newMirror(func(why error) { pl.resetClaims(ctx, why) })
	pl.parked = newParked(func(pods map[string]*v1.Pod) { h.Activate(logger, pods) })
	pl.waiters = newWaiters()
	if f := h.SharedInformerFactory(); f != nil {
		_, _ = f.Core().V1().Pods().Informer().AddEventHandler(pl.priorities.podHandler())
		// A parked pod that is deleted would otherwise stay parked until an
		// offer that fits it arrives. A deleted bound pod's task resources
		// are on their way back to the offers (see waiters).
		_, _ = f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: func(obj any) {
				if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = tomb.Obj
				}
				if p, ok := obj.(*v1.Pod); ok {
					pl.parked.unpark(p.UID)
					pl.waiters.done(p.UID)
					if p.Spec.NodeName != "" {
						pl.waiters.deleted(p.Spec.NodeName, time.Now())
					}
				}
			},
		})
	}
	go pl.mirror.run(ctx, pl.client, args.ReconnectMaxDelay.Duration, pl.parked.offersChanged)
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	return pl
}

// Name returns the plugin name.
func (pl *MesosOffers) Name() string { return Name }

// demandState holds the pod's demand with the default charge for what it
// does not request (what Filter checks), and what it requests (what Reserve
// sends: the broker charges the defaults of its flags).
// tolerations are the pod's in this profile (tolerationsOf), built once.
type demandState struct {
	demand, requested podresources.Demand
	tolerations       []v1.Toleration
	// narrowed is the PreFilterResult's NodeNames, nil when PreFilter did
	// not narrow; PostFilter explains the nodes it left out. It may be the
	// fit index's set, which changes at the next cycle's PreFilter: read
	// it in this cycle only.
	narrowed sets.Set[string]
}

func (s *demandState) Clone() fwk.StateData { return s }

type reservationState struct {
	bc *brokerClaim
}

func (s *reservationState) Clone() fwk.StateData { return s }

// PreFilter computes the pod's Mesos demand and tolerations once per cycle,
// turns a pod away at once when no agent could ever hold it, and names the
// nodes worth filtering (candidateNodes).
func (pl *MesosOffers) PreFilter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	d, err := podresources.FromPod(pod)
	if err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "mesos: "+err.Error())
	}
	// The roles the pod may really use: the policy's for its namespace,
	// narrowed by its annotation. No node can change a refusal.
	if d.Roles, err = pl.policy.Current().Resolve(pod.Namespace, d.Roles); err != nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "mesos: "+err.Error())
	}
	requested := d
	d = d.WithDefaults(podresources.DefaultPodScalars)
	ds := &demandState{demand: d, requested: requested, tolerations: tolerationsOf(pod)}
	state.Write(demandKey, ds)
	// The agents' room starts as their offers; preemption's dry run changes
	// it (preemption.go).
	room := &roomState{}
	state.Write(roomKey, room)
	pl.parked.park(pod, d)
	pl.waiters.start(pod.UID, time.Now())

	narrow := narrows(pl.priorities, pod, len(nodes))
	view := pl.mirror.preFilterView(d, narrow, maxNarrowed(len(nodes)))
	if !view.synced {
		return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("mesos: no offer view from the k8sm broker %s: %v", strings.Join(pl.args.BrokerAddresses, ","), view.why))
	}
	if view.noAgent != "" {
		// Unschedulable rather than unresolvable: a bigger agent may join,
		// and then the watch activates the pod.
		room.fitsNoAgent = true
		return nil, fwk.NewStatus(fwk.Unschedulable, view.noAgent)
	}
	switch {
	case !narrow:
		preFilterResults.WithLabelValues(preFilterNotNarrowed).Inc()
		return nil, nil
	case view.wide:
		preFilterResults.WithLabelValues(preFilterWide).Inc()
		return nil, nil
	}
	if names := candidateNodes(view.fitting, pl.priorities, pod); names != nil {
		ds.narrowed = names
		preFilterResults.WithLabelValues(preFilterNamed).Inc()
		preFilterNamedNodes.Add(float64(names.Len()))
		return &fwk.PreFilterResult{NodeNames: names}, nil
	}
	preFilterResults.WithLabelValues(preFilterNoneHold).Inc()
	return nil, nil
}

func demandStateFrom(state fwk.CycleState) (*demandState, error) {
	s, err := state.Read(demandKey)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", demandKey, err)
	}
	return s.(*demandState), nil
}

// Filter checks the node against the mirrored offers (and the node's taints,
// see Args.TolerateAgentTaint). Reasons name the short resource and the
// amount requested but not the amount offered, so that the scheduler's
// FailedScheduling message counts agents per resource ("3 mesos: not enough
// cpus offered (2 requested)") instead of listing every agent.
func (pl *MesosOffers) Filter(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	node := nodeInfo.Node()
	ds, err := demandStateFrom(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	if *pl.args.TolerateAgentTaint {
		if st := filterTaints(ctx, pod, node, ds.tolerations, pl.comparisonOperators); st != nil {
			return st
		}
	}
	d := ds.demand
	a := pl.mirror.get(node.Name)
	if a == nil {
		return fwk.NewStatus(fwk.Unschedulable, "mesos: no outstanding offers from the node")
	}
	r, changed := room(state, a)
	if changed {
		if _, ok := r.Holds(d); ok {
			return nil
		}
	} else if a.holds(d) {
		return nil
	}
	if a.launching {
		return fwk.NewStatus(fwk.Unschedulable, reasonLaunching)
	}
	_, short := r.Fit(d)
	// Filter runs for every node: nothing is worded for a log that is off.
	if logger := klog.FromContext(ctx).V(5); logger.Enabled() {
		logger.Info("Offers do not hold the pod", "pod", klog.KObj(pod), "node", node.Name, "short", short.Error())
	}
	return fwk.NewStatus(fwk.Unschedulable, reasons(short, d)...)
}

func (pl *MesosOffers) rpcContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, pl.args.RPCTimeout.Duration)
}

func podRef(p *v1.Pod) *brokerv1.PodRef {
	return &brokerv1.PodRef{Uid: string(p.UID), Namespace: p.Namespace, Name: p.Name}
}

// Reserve claims the pod's resources on the chosen agent in the plugin's
// offer mirror and sends the broker's Reserve without waiting: the serial
// scheduling cycle never waits for the network. Bind awaits the answer.
func (pl *MesosOffers) Reserve(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) *fwk.Status {
	ds, err := demandStateFrom(state)
	if err != nil {
		return fwk.AsStatus(err)
	}
	c, epoch, short, err := pl.mirror.claim(nodeName, pod.UID, ds.demand)
	switch {
	case err != nil:
		return fwk.NewStatus(fwk.Unschedulable, err.Error())
	case !short.Fits():
		return fwk.NewStatus(fwk.Unschedulable, reasons(short, ds.demand)...)
	}
	req := &brokerv1.ReserveRequest{
		Pod:      podRef(pod),
		NodeName: nodeName,
		Demand:   brokerDemand(ds.requested, c),
		Ttl:      durationpb.New(pl.args.ReservationTTL.Duration),
		Epoch:    epoch,
	}
	state.Write(reservationKey, &reservationState{bc: pl.sendReserve(ctx, req, c)})
	pl.priorities.assume(pod, nodeName)
	pl.parked.unpark(pod.UID)
	pl.waiters.done(pod.UID)
	if logger := klog.FromContext(ctx).V(4); logger.Enabled() {
		logger.Info("Claimed Mesos resources", "pod", klog.KObj(pod), "node", nodeName, "role", c.role, "claim", c.res.String())
	}
	return nil
}

// brokerDemand is what the broker is asked for: what the pod requests (the
// broker charges its own defaults for the rest), with the ports the local
// claim chose for its wildcard ports as fixed ports, so that the broker
// claims exactly the ports the mirror took.
func brokerDemand(requested podresources.Demand, c *claim) *brokerv1.Demand {
	d := requested
	d.HostPorts = c.res.Ports.Ports()
	d.WildcardPorts = 0
	return brokerapi.DemandToProto(d)
}

// Unreserve drops the local claim at once and releases the broker's
// reservation once its answer is known, by its id. It may run without a
// Reserve before it (nothing to do then), and after a failed Bind, when the
// pod waits for offers again.
func (pl *MesosOffers) Unreserve(ctx context.Context, state fwk.CycleState, pod *v1.Pod, nodeName string) {
	if s, err := state.Read(reservationKey); err == nil {
		pl.abandon(ctx, s.(*reservationState).bc)
		klog.FromContext(ctx).V(4).Info("Released Mesos claim", "pod", klog.KObj(pod), "node", nodeName)
	}
	pl.priorities.forgetAssumed(pod.UID)
	// Parked after its claim went, so that its own claim does not
	// activate it: it waits for offers like any pod without room.
	if ds, err := demandStateFrom(state); err == nil {
		pl.parked.park(pod, ds.demand)
	}
}

// launch asks the broker to launch a reservation, and asks again when the
// answer was lost (Unavailable: the connection broke, maybe after the broker
// launched it). Launch is idempotent per reservation: a retry gets the task
// the first call launched, not a second task. A broker that lost the
// reservation (a new leader) answers NotFound, and the pod is scheduled
// again.
func (pl *MesosOffers) launch(ctx context.Context, req *brokerv1.LaunchRequest) (*brokerv1.LaunchResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, pl.args.LaunchTimeout.Duration)
	defer cancel()
	const tries = 3
	for try := 1; ; try++ {
		resp, err := pl.client.Launch(ctx, req)
		if status.Code(err) != codes.Unavailable || try == tries {
			return resp, err
		}
		klog.FromContext(ctx).V(2).Info("Launch answer lost; asking again for the same reservation", "reservation", req.GetReservationId(), "try", try, "err", err)
		select {
		case <-ctx.Done():
			return resp, err
		case <-time.After(time.Duration(try) * 100 * time.Millisecond):
		}
	}
}

// Bind awaits the broker's answer to Reserve (a refusal fails the bind and
// the pod is scheduled again), launches the pod as a Mesos task and then
// binds it. A pod whose Binding fails has its task killed, so that no task
// runs for a pod the cluster does not place there.
func (pl *MesosOffers) Bind(ctx context.Context, state fwk.CycleState, p *v1.Pod, nodeName string) *fwk.Status {
	failpoint.Hit(failpoint.SchedulerBind)
	logger := klog.FromContext(ctx)
	s, err := state.Read(reservationKey)
	if err != nil {
		return fwk.AsStatus(fmt.Errorf("binding pod %s/%s: %w", p.Namespace, p.Name, errNoReservation))
	}
	bc := s.(*reservationState).bc
	phases := startPhases()
	// The task's pod depends only on the local claim, so it is shaped,
	// recorded and encoded while the broker answers Reserve rather than
	// after: the host ports' patch is an API round trip.
	pod, err := taskPod(p, nodeName, bc.claim.wildcard)
	if err != nil {
		return fwk.AsStatus(err)
	}
	var recorded chan error
	if len(bc.claim.wildcard) > 0 {
		recorded = make(chan error, 1)
		go func() { recorded <- pl.recordHostPorts(ctx, pod) }()
	}
	data, err := taskinfo.EncodePod(pod)
	reserved, rerr := bc.await(ctx)
	phases.end(phaseReserve)
	if recorded != nil {
		// Awaited on every path: a patch of this attempt must not land
		// after the next attempt's, naming ports this one chose.
		if perr := <-recorded; err == nil {
			err = perr
		}
		phases.end(phaseHostPorts)
	}
	if rerr != nil {
		return brokerStatus(fmt.Sprintf("reserving %s on node %s", bc.claim.res, nodeName), rerr)
	}
	if err != nil {
		return fwk.AsStatus(err)
	}
	r := reserved.GetReservation()
	// An ACCEPT takes the agent's offers whole, and the broker batches
	// only the reservations it knows of: a pod claimed on this agent whose
	// Reserve is still on its way would lose its share to this launch and
	// fail its bind. Its answer is a round trip away; once the broker
	// holds its reservation, this launch waits in the agent's batch for
	// that pod's, and both go in one ACCEPT. From here until the view
	// shows the ACCEPT, no new pod is claimed on the agent (launching.go).
	mark, unanswered := pl.mirror.launching(nodeName, p.UID)
	for _, done := range unanswered {
		select {
		case <-done:
		case <-ctx.Done():
		}
	}
	phases.end(phaseClaims)
	resp, err := pl.launch(ctx, &brokerv1.LaunchRequest{ReservationId: r.GetId(), Pod: data.JSON, PodContentType: podJSON})
	phases.end(phaseLaunch)
	var took uint64 // the launch failed: it waits for no version
	if err == nil {
		took = resp.GetResourceVersion()
	}
	if a := pl.mirror.launched(mark, took); a != nil {
		pl.parked.offersChanged(ctx, []*agent{a})
	}
	if err != nil {
		return brokerStatus(fmt.Sprintf("launching on node %s", nodeName), err)
	}
	logger.V(3).Info("Launched Mesos task", "pod", klog.KObj(p), "node", nodeName, "task", resp.GetTaskId(), "agent", resp.GetAgentId(), "batch", resp.GetBatchSize())

	// The pod goes where its task runs: the reservation's node, or that of
	// a live task of an earlier attempt the broker adopted instead of
	// launching (pl.adopted).
	target := nodeName
	if n := resp.GetNodeName(); n != "" && n != nodeName {
		target = n
		pl.adopted(logger, p, nodeName, resp)
	}
	err = pl.bind(ctx, p, target, resp.GetTaskId())
	phases.end(phaseBinding)
	if err != nil {
		kctx, cancel := pl.rpcContext(context.WithoutCancel(ctx))
		defer cancel()
		if _, kerr := pl.client.Kill(kctx, &brokerv1.KillRequest{Pod: podRef(p), AgentId: resp.GetAgentId()}); kerr != nil {
			logger.Error(kerr, "Killing the task of a pod whose Binding failed; the broker's reconciler must kill it", "pod", klog.KObj(p), "task", resp.GetTaskId())
		}
		return fwk.AsStatus(fmt.Errorf("binding pod %s/%s to node %s after launching task %s (killed): %w", p.Namespace, p.Name, target, resp.GetTaskId(), err))
	}
	pl.recordDefaults(state, p, r)
	return nil
}
