package bench

import (
	"context"
	"fmt"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// otherFramework is a second Mesos framework on the same agents: it holds
// every offer it gets for a while, as a framework deciding what to run
// would, then declines it with a short refuse filter. While it holds an
// agent's offer, k8sm cannot be offered that agent.
type otherFramework struct {
	name   string
	s      *simtest.Scheduler
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	offers   int
	declined int
}

// OtherFrameworkResult is what a second framework saw.
type OtherFrameworkResult struct {
	Name        string  `json:"name"`
	Offers      int     `json:"offers"`
	HoldMs      float64 `json:"hold_ms"`
	RefuseSecs  float64 `json:"refuse_seconds"`
	DeclineErrs int     `json:"-"`
}

const (
	otherHold   = 200 * time.Millisecond
	otherRefuse = 1.0
)

func startOtherFramework(ctx context.Context, masterURL, name string) (*otherFramework, error) {
	ctx, cancel := context.WithCancel(ctx)
	s, err := simtest.Subscribe(ctx, masterURL, wire.Protobuf, mesos.FrameworkInfo{User: "root", Name: name})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribing framework %s: %w", name, err)
	}
	o := &otherFramework{name: name, s: s, cancel: cancel, done: make(chan struct{})}
	go o.run(ctx)
	return o, nil
}

func (o *otherFramework) run(ctx context.Context) {
	defer close(o.done)
	for {
		ev, err := o.s.Next(ctx, scheduler.Event_OFFERS)
		if err != nil {
			return
		}
		ids := make([]mesos.OfferID, 0, len(ev.Offers.Offers))
		for _, of := range ev.Offers.Offers {
			ids = append(ids, of.ID)
		}
		o.mu.Lock()
		o.offers += len(ids)
		o.mu.Unlock()
		go func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(otherHold):
			}
			refuse := otherRefuse
			if err := o.s.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{
				OfferIDs: ids, Filters: &mesos.Filters{RefuseSeconds: &refuse},
			}}); err == nil {
				o.mu.Lock()
				o.declined += len(ids)
				o.mu.Unlock()
			}
		}()
	}
}

func (o *otherFramework) result() OtherFrameworkResult {
	o.mu.Lock()
	defer o.mu.Unlock()
	return OtherFrameworkResult{Name: o.name, Offers: o.offers, HoldMs: float64(otherHold.Milliseconds()), RefuseSecs: otherRefuse}
}

func (o *otherFramework) stop() {
	o.cancel()
	o.s.Close()
	<-o.done
}
