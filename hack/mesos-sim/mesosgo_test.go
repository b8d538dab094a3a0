package mesossim_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
)

// MesosGoScheduler drives a framework with nothing but mesos-go's own client
// libraries (httpcli/httpsched and the calls builders), the way the k8sm
// broker will, and records the events it sees.
type MesosGoScheduler struct {
	caller calls.Caller
	fwID   string
	events chan *scheduler.Event
	errs   chan error
}

// StartMesosGoScheduler subscribes through httpsched at endpoint (which may be a non-leading master: httpsched follows 307s).
func StartMesosGoScheduler(ctx context.Context, endpoint, mediaType string, info mesos.FrameworkInfo) (*MesosGoScheduler, error) {
	cli := httpcli.New(
		httpcli.Endpoint(endpoint+"/api/v1/scheduler"),
		httpcli.Codec(codecs.ByMediaType[encoding.MediaType(mediaType)]),
		httpcli.Do(httpcli.With(httpcli.Timeout(10*time.Second))),
	)
	s := &MesosGoScheduler{caller: httpsched.NewCaller(cli), events: make(chan *scheduler.Event, 1000), errs: make(chan error, 1)}
	resp, err := s.caller.Call(ctx, calls.Subscribe(&info))
	if err != nil {
		return nil, fmt.Errorf("subscribing with httpsched: %w", err)
	}
	go func() {
		defer resp.Close()
		for {
			var ev scheduler.Event
			if err := resp.Decode(&ev); err != nil {
				s.errs <- err
				close(s.events)
				return
			}
			s.events <- &ev
		}
	}()
	return s, nil
}

func (s *MesosGoScheduler) next(ctx context.Context, t scheduler.Event_Type) (*scheduler.Event, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", t, ctx.Err())
		case ev, ok := <-s.events:
			if !ok {
				return nil, fmt.Errorf("waiting for %s: stream ended: %v", t, <-s.errs)
			}
			if ev.Type == scheduler.Event_SUBSCRIBED {
				s.fwID = ev.Subscribed.FrameworkID.Value
			}
			if ev.Type == t {
				return ev, nil
			}
		}
	}
}

func (s *MesosGoScheduler) call(ctx context.Context, c *scheduler.Call) error {
	resp, err := s.caller.Call(ctx, c.With(calls.Framework(s.fwID)))
	if resp != nil {
		resp.Close()
	}
	return err
}

// waitUpdate returns the next update of a task in a state, acknowledging every update it passes.
func (s *MesosGoScheduler) waitUpdate(ctx context.Context, taskID string, state mesos.TaskState) (*mesos.TaskStatus, error) {
	for {
		ev, err := s.next(ctx, scheduler.Event_UPDATE)
		if err != nil {
			return nil, err
		}
		st := ev.Update.Status
		if len(st.UUID) > 0 {
			if err := s.call(ctx, calls.Acknowledge(st.AgentID.Value, st.TaskID.Value, st.UUID)); err != nil {
				return nil, err
			}
		}
		if st.TaskID.Value == taskID && st.GetState() == state {
			return &st, nil
		}
	}
}

func runMesosGoScenario(t *testing.T, ctx context.Context, endpoint, mediaType string) {
	t.Helper()
	s, err := StartMesosGoScheduler(ctx, endpoint, mediaType, mesos.FrameworkInfo{User: "root", Name: "mesos-go"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.next(ctx, scheduler.Event_SUBSCRIBED); err != nil {
		t.Fatal(err)
	}
	ev, err := s.next(ctx, scheduler.Event_OFFERS)
	if err != nil {
		t.Fatal(err)
	}
	o := ev.Offers.Offers[0]
	exec := testExecutor("mesos-go-exec")
	task := mesos.TaskInfo{Name: "t", TaskID: mesos.TaskID{Value: "t"}, AgentID: o.AgentID, Executor: &exec, Resources: resources(t, "cpus:1;mem:64")}
	if err := s.call(ctx, calls.Accept(calls.OfferOperations{calls.OpLaunch(task)}.WithOffers(o.ID))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.waitUpdate(ctx, "t", mesos.TASK_RUNNING); err != nil {
		t.Fatal(err)
	}
	if err := s.call(ctx, calls.Kill("t", o.AgentID.Value)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.waitUpdate(ctx, "t", mesos.TASK_KILLED); err != nil {
		t.Fatal(err)
	}
	if err := s.call(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN}); err != nil {
		t.Fatal(err)
	}
}

// TestMesosGoClient: a scheduler built only on mesos-go registers, gets an
// offer, launches a task on a real executor process and sees it RUNNING and KILLED.
func TestMesosGoClient(t *testing.T) {
	for _, mt := range []encoding.Codec{codecs.ByMediaType[codecs.MediaTypeJSON], codecs.ByMediaType[codecs.MediaTypeProtobuf]} {
		t.Run(string(mt.Type), func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:2;mem:1024")}})
			runMesosGoScenario(t, testCtx(t), s.MasterURL(), string(mt.Type))
		})
	}
}
