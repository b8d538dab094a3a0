package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// BrokerResult measures the broker with no scheduler in front of it: this
// driver plays the MesosOffers plugin over gRPC on loopback.
type BrokerResult struct {
	RoundTrips int `json:"round_trips"`
	// ReserveLaunch is one Reserve plus one Launch, back to back, one pod at
	// a time; Launch returns once the master took the ACCEPT.
	ReserveLaunch  Latency `json:"reserve_launch"`
	Reserve        Latency `json:"reserve"`
	Launch         Latency `json:"launch"`
	FailedReserves int     `json:"failed_reserves"`
	// OfferBurst: after pending pods made the broker REVIVE, how fast the
	// agents' offers showed up in its WatchOffers stream: agents ÷ (last −
	// first), the offers the broker turned into its view per second.
	OfferBurstAgents int     `json:"offer_burst_agents"`
	OfferBurstMs     float64 `json:"offer_burst_ms"`
	OffersPerSecond  float64 `json:"offers_per_s"`
	Error            string  `json:"error,omitempty"`
}

func hasCPUs(a *brokerv1.Agent) bool {
	for _, r := range a.GetAvailable() {
		if r.GetResources().GetCpus() >= 0.01 {
			return true
		}
	}
	return false
}

func (r *runner) brokerAlone(ctx context.Context, e *scenarioEnv) (*BrokerResult, error) {
	res := &BrokerResult{}
	conn, err := grpc.NewClient(e.brokerRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return res, err
	}
	defer conn.Close()
	client := brokerv1.NewBrokerClient(conn)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.WatchOffers(wctx, &brokerv1.WatchOffersRequest{})
	if err != nil {
		return res, fmt.Errorf("watching offers: %w", err)
	}
	var mu sync.Mutex
	avail := map[string]bool{}
	var first, last time.Time
	seen := map[string]bool{}
	go func() {
		inSnapshot := false
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			now := time.Now()
			mu.Lock()
			mark := func(a *brokerv1.Agent) {
				ok := hasCPUs(a)
				avail[a.GetHostname()] = ok
				if ok && !seen[a.GetHostname()] {
					seen[a.GetHostname()] = true
					if first.IsZero() {
						first = now
					}
					last = now
				}
			}
			switch x := ev.GetEvent().(type) {
			case *brokerv1.WatchOffersResponse_Snapshot:
				// A snapshot comes in chunks; the first one starts afresh.
				if !inSnapshot {
					avail = map[string]bool{}
				}
				inSnapshot = x.Snapshot.GetMore()
				for _, a := range x.Snapshot.GetAgents() {
					mark(a)
				}
			case *brokerv1.WatchOffersResponse_Updated:
				mark(x.Updated)
			case *brokerv1.WatchOffersResponse_Removed:
				avail[x.Removed.GetHostname()] = false
			}
			mu.Unlock()
		}
	}()

	label := e.sc.Name + "-broker"
	n := e.sc.BrokerRoundTrips
	pods := make([]*corev1.Pod, 0, n)
	refs := make([]*brokerv1.PodRef, 0, n)
	// Pending pods of the mesos-scheduler (no scheduler runs yet): the
	// broker revives offers for them, as it would for real ones.
	for i := range n {
		p, err := r.kube.CoreV1().Pods("default").Create(ctx, benchPod(K8smScheduler, fmt.Sprintf("%s-%05d", label, i), label), metav1.CreateOptions{})
		if err != nil {
			return res, fmt.Errorf("creating pod: %w", err)
		}
		pods = append(pods, p)
		refs = append(refs, &brokerv1.PodRef{Uid: string(p.UID), Namespace: p.Namespace, Name: p.Name})
	}
	// The first offer burst after the revive: every agent, one allocation.
	_ = poll(ctx, 30*time.Second, func() (bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) >= e.sc.Agents, nil
	})
	mu.Lock()
	res.OfferBurstAgents = len(seen)
	if len(seen) > 1 {
		res.OfferBurstMs = float64(last.Sub(first).Microseconds()) / 1000
		res.OffersPerSecond = perSecond(len(seen), last.Sub(first))
	}
	mu.Unlock()

	var rl, rs, ln []time.Duration
	deadline := time.Now().Add(r.cfg.PhaseTimeout)
	for i := 0; i < n && time.Now().Before(deadline); {
		mu.Lock()
		host := ""
		for h, ok := range avail {
			if ok {
				host = h
				break
			}
		}
		if host != "" {
			// Used until the watch says the agent was offered again.
			avail[host] = false
		}
		mu.Unlock()
		if host == "" {
			time.Sleep(5 * time.Millisecond)
			continue
		}
		// The pod in its final shape, bound to the node, as the plugin sends it.
		pods[i].Spec.NodeName = host
		data, err := taskinfo.EncodePod(pods[i])
		if err != nil {
			return res, err
		}
		t0 := time.Now()
		resp, err := client.Reserve(ctx, &brokerv1.ReserveRequest{Pod: refs[i], NodeName: host, Demand: &brokerv1.Demand{Cpus: 0.01, MemMb: 16}})
		if err != nil {
			res.FailedReserves++
			continue
		}
		t1 := time.Now()
		launched, err := client.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: resp.GetReservation().GetId(), Pod: data.JSON, PodContentType: "application/json"})
		if err != nil {
			klog.ErrorS(err, "Launch", "pod", refs[i].GetName(), "node", host)
			res.FailedReserves++
			continue
		}
		t2 := time.Now()
		rl, rs, ln = append(rl, t2.Sub(t0)), append(rs, t1.Sub(t0)), append(ln, t2.Sub(t1))
		// Bound as the plugin binds (not timed), naming the task it runs
		// as: the broker kills the task of a bound pod when the pod is
		// deleted, an unbound pod's task would run on until the broker's
		// next reconciliation, and a pod bound without the task's name is
		// taken to run as another task, this one killed as superseded.
		if err := r.kube.CoreV1().Pods("default").Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: refs[i].GetName(), Namespace: "default", UID: types.UID(refs[i].GetUid()),
				Annotations: map[string]string{taskinfo.TaskIDAnnotation: launched.GetTaskId()}},
			Target: corev1.ObjectReference{Kind: "Node", Name: host},
		}, metav1.CreateOptions{}); err != nil {
			klog.ErrorS(err, "Binding", "pod", refs[i].GetName(), "node", host)
		}
		i++
	}
	res.RoundTrips = len(rl)
	res.ReserveLaunch, res.Reserve, res.Launch = Summarize(rl), Summarize(rs), Summarize(ln)
	if res.RoundTrips < n {
		res.Error = fmt.Sprintf("%d of %d round trips within %v", res.RoundTrips, n, r.cfg.PhaseTimeout)
	}
	cancel()
	if err := r.deletePods(ctx, e, "run="+label); err != nil {
		return res, err
	}
	return res, nil
}
