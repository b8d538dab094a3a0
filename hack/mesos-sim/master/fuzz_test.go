package master_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

const fuzzFramework = "fuzz-master-0000"

var (
	fuzzOnce   sync.Once
	fuzzMaster *master.Master
	fuzzStream string
)

// seedCalls are well-formed calls of every type for the fuzzer to mutate.
func seedCalls() []*scheduler.Call {
	fw := &mesos.FrameworkID{Value: fuzzFramework}
	info := mesos.FrameworkInfo{User: "u", Name: "n", ID: fw}
	refuse := 1.0
	oid := []mesos.OfferID{{Value: "fuzz-master-O0"}}
	task := mesos.TaskInfo{Name: "t", TaskID: mesos.TaskID{Value: "t"}, AgentID: mesos.AgentID{Value: "a"},
		Command: &mesos.CommandInfo{Value: strp("true")}}
	return []*scheduler.Call{
		{Type: scheduler.Call_SUBSCRIBE, FrameworkID: fw, Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &info}},
		{Type: scheduler.Call_ACCEPT, FrameworkID: fw, Accept: &scheduler.Call_Accept{OfferIDs: oid, Operations: []mesos.Offer_Operation{
			{Type: mesos.Offer_Operation_LAUNCH, Launch: &mesos.Offer_Operation_Launch{TaskInfos: []mesos.TaskInfo{task}}},
			{Type: mesos.Offer_Operation_LAUNCH_GROUP, LaunchGroup: &mesos.Offer_Operation_LaunchGroup{TaskGroup: mesos.TaskGroupInfo{Tasks: []mesos.TaskInfo{task}}}},
			{Type: mesos.Offer_Operation_RESERVE},
		}}},
		{Type: scheduler.Call_DECLINE, FrameworkID: fw, Decline: &scheduler.Call_Decline{OfferIDs: oid, Filters: &mesos.Filters{RefuseSeconds: &refuse}}},
		{Type: scheduler.Call_REVIVE, FrameworkID: fw, Revive: &scheduler.Call_Revive{Roles: []string{"*"}}},
		{Type: scheduler.Call_SUPPRESS, FrameworkID: fw},
		{Type: scheduler.Call_KILL, FrameworkID: fw, Kill: &scheduler.Call_Kill{TaskID: mesos.TaskID{Value: "t"}}},
		{Type: scheduler.Call_SHUTDOWN, FrameworkID: fw, Shutdown: &scheduler.Call_Shutdown{ExecutorID: mesos.ExecutorID{Value: "e"}, AgentID: mesos.AgentID{Value: "a"}}},
		{Type: scheduler.Call_ACKNOWLEDGE, FrameworkID: fw, Acknowledge: &scheduler.Call_Acknowledge{AgentID: mesos.AgentID{Value: "a"}, TaskID: mesos.TaskID{Value: "t"}, UUID: make([]byte, 16)}},
		{Type: scheduler.Call_RECONCILE, FrameworkID: fw, Reconcile: &scheduler.Call_Reconcile{Tasks: []scheduler.Call_Reconcile_Task{{TaskID: mesos.TaskID{Value: "t"}}}}},
		{Type: scheduler.Call_MESSAGE, FrameworkID: fw, Message: &scheduler.Call_Message{AgentID: mesos.AgentID{Value: "a"}, ExecutorID: mesos.ExecutorID{Value: "e"}, Data: []byte("x")}},
		{Type: scheduler.Call_UPDATE_FRAMEWORK, FrameworkID: fw, UpdateFramework: &scheduler.Call_UpdateFramework{FrameworkInfo: info}},
		{Type: scheduler.Call_TEARDOWN, FrameworkID: fw},
	}
}

func strp(s string) *string { return &s }

// FuzzDecodeCall posts arbitrary bodies, as JSON or protobuf, to a running
// master's scheduler endpoint on a subscribed framework's stream: whatever
// arrives, the master answers with one of the real master's status codes and
// keeps running.
func FuzzDecodeCall(f *testing.F) {
	for _, c := range seedCalls() {
		for i, ct := range []string{wire.JSON, wire.Protobuf} {
			b, err := wire.Encode(ct, c)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(byte(i), b)
		}
	}
	f.Add(byte(0), []byte(`{"type":"NOT_A_TYPE"}`))
	f.Add(byte(0), []byte(`{"type":"ACCEPT","framework_id":{"value":"fuzz-master-0000"},"accept":{"offer_ids":[{"value":5}]}}`))
	f.Add(byte(1), []byte{0x08, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, enc byte, body []byte) {
		fuzzOnce.Do(func() { startFuzzMaster(t) })
		ct := wire.JSON
		if enc%2 == 1 {
			ct = wire.Protobuf
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // subscriptions must not hold the fuzzer; the handler returns at once
		req := httptest.NewRequest(http.MethodPost, "/api/v1/scheduler", bytes.NewReader(body)).WithContext(ctx)
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Accept", ct)
		rec := httptest.NewRecorder()
		if len(body) > 0 && body[0]%3 == 0 {
			req.Header.Set("Mesos-Stream-Id", fuzzStream)
		}
		fuzzMaster.Handler().ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted, http.StatusBadRequest, http.StatusForbidden:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if rec.Code == http.StatusBadRequest && rec.Body.Len() == 0 {
			t.Fatalf("400 without a message for %q", body)
		}
	})
}

func startFuzzMaster(t *testing.T) {
	m := master.New(master.Config{ID: "fuzz-master", HeartbeatInterval: time.Hour, AllocationInterval: 10 * time.Millisecond})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := simtest.Subscribe(context.Background(), "http://"+m.Addr(), wire.Protobuf, mesos.FrameworkInfo{User: "u", Name: "n", FailoverTimeout: func() *float64 { v := 3600.0; return &v }()})
	if err != nil {
		t.Fatal(err)
	}
	if s.FrameworkID != fuzzFramework {
		t.Fatalf("framework id %s, want %s", s.FrameworkID, fuzzFramework)
	}
	fuzzMaster, fuzzStream = m, s.StreamID
}

// TestSeedCallsAccepted: the seed calls are valid and each gets 202 on the live stream.
func TestSeedCallsAccepted(t *testing.T) {
	m := master.New(master.Config{ID: "seed-master", HeartbeatInterval: time.Hour})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	for _, ct := range []string{wire.JSON, wire.Protobuf} {
		ft := 3600.0
		s, err := simtest.Subscribe(context.Background(), "http://"+m.Addr(), ct, mesos.FrameworkInfo{User: "u", Name: "n", FailoverTimeout: &ft})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range seedCalls() {
			if c.Type == scheduler.Call_SUBSCRIBE || c.Type == scheduler.Call_TEARDOWN {
				continue
			}
			c.FrameworkID = &mesos.FrameworkID{Value: s.FrameworkID}
			if c.UpdateFramework != nil {
				c.UpdateFramework.FrameworkInfo.ID = c.FrameworkID
			}
			if code, msg, err := s.Call(context.Background(), c); err != nil || code != http.StatusAccepted {
				t.Errorf("%s %s: %d %q %v", ct, c.Type, code, msg, err)
			}
		}
		s.Close()
	}
}
