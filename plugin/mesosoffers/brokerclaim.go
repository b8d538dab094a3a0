package mesosoffers

import (
	"context"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// brokerClaim is the broker's side of a local claim: the Reserve RPC sent
// from the scheduling cycle without waiting, and its answer, which the
// binding cycle awaits. The broker stays the only admission point: a claim
// it refuses fails the bind.
type brokerClaim struct {
	claim *claim
	pod   *brokerv1.PodRef
	// done is closed once resp or err holds the outcome: the broker's
	// answer, or the failure that made the plugin stop waiting for it.
	done   chan struct{}
	resp   *brokerv1.ReserveResponse
	err    error
	cancel context.CancelFunc

	mu       sync.Mutex
	answered bool
	// granted is the reservation the broker made, once known.
	granted string
	// abandoned: nobody will launch the reservation (Unreserve, or the
	// watch reset); released: its Unreserve was sent. A reservation that is
	// both granted and abandoned is released exactly once, by id, and only
	// after the broker answered, so no release can overtake its Reserve.
	abandoned, released bool
}

// claims tracks the Reserve RPCs in flight, to fail them when the watch
// ends or the broker restarts.
type brokerClaims struct {
	mu     sync.Mutex
	flight map[*brokerClaim]struct{}
}

func (b *brokerClaims) add(bc *brokerClaim) {
	b.mu.Lock()
	if b.flight == nil {
		b.flight = map[*brokerClaim]struct{}{}
	}
	b.flight[bc] = struct{}{}
	b.mu.Unlock()
}

func (b *brokerClaims) remove(bc *brokerClaim) {
	b.mu.Lock()
	delete(b.flight, bc)
	b.mu.Unlock()
}

func (b *brokerClaims) all() []*brokerClaim {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*brokerClaim, 0, len(b.flight))
	for bc := range b.flight {
		out = append(out, bc)
	}
	return out
}

// sendReserve sends req for the local claim c and returns at once; the
// answer settles the claim.
func (pl *MesosOffers) sendReserve(ctx context.Context, req *brokerv1.ReserveRequest, c *claim) *brokerClaim {
	// The RPC outlives the scheduling cycle that sent it.
	rctx, cancel := pl.rpcContext(context.WithoutCancel(ctx))
	bc := &brokerClaim{claim: c, pod: req.GetPod(), done: c.done, cancel: cancel}
	pl.inflight.add(bc)
	go func() {
		resp, err := pl.client.Reserve(rctx, req)
		cancel()
		pl.inflight.remove(bc)
		pl.settle(ctx, bc, resp, err)
	}()
	return bc
}

// settle records the broker's answer: a grant lets the view drop the local
// claim once it shows the reservation, a refusal drops it now. A grant
// nobody will use any more is released.
func (pl *MesosOffers) settle(ctx context.Context, bc *brokerClaim, resp *brokerv1.ReserveResponse, err error) {
	bc.mu.Lock()
	first := !bc.answered
	if first {
		bc.answered, bc.resp, bc.err = true, resp, err
		close(bc.done)
	}
	if err == nil {
		bc.granted = resp.GetReservation().GetId()
	}
	release := bc.takeReleaseLocked()
	bc.mu.Unlock()
	if first {
		if err == nil {
			pl.mirror.answered(bc.claim, resp.GetResourceVersion())
		} else {
			pl.dropClaim(ctx, bc.claim)
		}
	}
	if release != "" {
		pl.release(ctx, bc, release)
	}
}

// fail stops waiting for the broker's answer: the watch ended or the broker
// restarted, so the claim may rest on offers nobody holds. A grant that
// still arrives is released.
func (pl *MesosOffers) fail(ctx context.Context, bc *brokerClaim, err error) {
	bc.mu.Lock()
	if !bc.answered {
		bc.answered, bc.err = true, err
		close(bc.done)
	}
	bc.abandoned = true
	release := bc.takeReleaseLocked()
	bc.mu.Unlock()
	bc.cancel()
	if release != "" {
		pl.release(ctx, bc, release)
	}
}

// abandon is Unreserve's part: the local claim goes at once, the broker's
// reservation once it is known.
func (pl *MesosOffers) abandon(ctx context.Context, bc *brokerClaim) {
	pl.dropClaim(ctx, bc.claim)
	bc.mu.Lock()
	bc.abandoned = true
	release := bc.takeReleaseLocked()
	bc.mu.Unlock()
	if release != "" {
		pl.release(ctx, bc, release)
	}
}

// dropClaim takes c out of the view; the pods waiting for offers that now
// fit are activated, as when the broker's view frees resources (a refused
// claim brings no event from the broker).
func (pl *MesosOffers) dropClaim(ctx context.Context, c *claim) {
	if a := pl.mirror.drop(c); a != nil {
		pl.parked.offersChanged(ctx, []*agent{a})
	}
}

// takeReleaseLocked returns the reservation to release now, if any.
func (bc *brokerClaim) takeReleaseLocked() string {
	if bc.granted == "" || !bc.abandoned || bc.released {
		return ""
	}
	bc.released = true
	return bc.granted
}

func (pl *MesosOffers) release(ctx context.Context, bc *brokerClaim, id string) {
	rctx, cancel := pl.rpcContext(context.WithoutCancel(ctx))
	defer cancel()
	if _, err := pl.client.Unreserve(rctx, &brokerv1.UnreserveRequest{ReservationId: id, Pod: bc.pod}); err != nil {
		// The broker's TTL frees the claim anyway.
		klog.FromContext(ctx).Error(err, "Releasing Mesos reservation failed; it ends with its TTL", "pod", klog.KRef(bc.pod.GetNamespace(), bc.pod.GetName()), "reservation", id)
	}
}

// resetClaims fails every Reserve in flight; the mirror has dropped the
// overlay.
func (pl *MesosOffers) resetClaims(ctx context.Context, why error) {
	err := status.Errorf(codes.Unavailable, "the offer view was reset before the broker answered Reserve: %v", why)
	for _, bc := range pl.inflight.all() {
		pl.fail(ctx, bc, err)
	}
}

// await waits for the broker's answer to the pod's Reserve.
func (bc *brokerClaim) await(ctx context.Context) (*brokerv1.ReserveResponse, error) {
	select {
	case <-bc.done:
		return bc.resp, bc.err
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}
