package mesossim_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

func post(t *testing.T, ctx context.Context, method, url string, hdr map[string]string, body []byte) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url+"/api/v1/scheduler", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.String(), resp.Header
}

func encode(t *testing.T, ct string, call *scheduler.Call) []byte {
	b, err := wire.Encode(ct, call)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestStatusCodes checks each rejection of Master::Http::scheduler, in order, in both encodings.
func TestStatusCodes(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:2;mem:1024")}})
	url := s.MasterURL()
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			ctx := testCtx(t)
			info := fwInfo("codes")
			sub := encode(t, ct, &scheduler.Call{Type: scheduler.Call_SUBSCRIBE, Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &info}})
			h := map[string]string{"Content-Type": ct, "Accept": ct}

			if code, _, hdr := post(t, ctx, http.MethodGet, url, h, nil); code != http.StatusMethodNotAllowed || hdr.Get("Allow") != "POST" {
				t.Errorf("GET: got %d Allow=%q, want 405 Allow=POST", code, hdr.Get("Allow"))
			}
			if code, msg, _ := post(t, ctx, http.MethodPost, url, map[string]string{"Accept": ct}, sub); code != http.StatusBadRequest || !strings.Contains(msg, "Content-Type") {
				t.Errorf("no Content-Type: got %d %q, want 400", code, msg)
			}
			if code, _, _ := post(t, ctx, http.MethodPost, url, map[string]string{"Content-Type": "text/plain"}, sub); code != http.StatusUnsupportedMediaType {
				t.Errorf("text/plain: got %d, want 415", code)
			}
			if code, _, _ := post(t, ctx, http.MethodPost, url, map[string]string{"Content-Type": ct, "Accept": "text/html"}, sub); code != http.StatusNotAcceptable {
				t.Errorf("Accept text/html: got %d, want 406", code)
			}
			if code, msg, _ := post(t, ctx, http.MethodPost, url, map[string]string{"Content-Type": ct, "Mesos-Stream-Id": "x"}, sub); code != http.StatusBadRequest || !strings.Contains(msg, "Mesos-Stream-Id") {
				t.Errorf("SUBSCRIBE with stream id: got %d %q, want 400", code, msg)
			}
			// Garbage in the body's encoding.
			if code, msg, _ := post(t, ctx, http.MethodPost, url, h, []byte("{\x00garbage")); code != http.StatusBadRequest || msg == "" {
				t.Errorf("garbage body: got %d %q, want 400 with a message", code, msg)
			}
			// A call that is not valid: missing framework id on a non-subscribe call.
			dec := encode(t, ct, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{}})
			if code, msg, _ := post(t, ctx, http.MethodPost, url, h, dec); code != http.StatusBadRequest || !strings.Contains(msg, "framework_id") {
				t.Errorf("no framework_id: got %d %q, want 400", code, msg)
			}
			// Unknown framework.
			dec = encode(t, ct, &scheduler.Call{Type: scheduler.Call_DECLINE, FrameworkID: &mesos.FrameworkID{Value: "nope"}, Decline: &scheduler.Call_Decline{}})
			if code, msg, _ := post(t, ctx, http.MethodPost, url, h, dec); code != http.StatusBadRequest || !strings.Contains(msg, "Framework cannot be found") {
				t.Errorf("unknown framework: got %d %q, want 400", code, msg)
			}

			sched := subscribe(t, ctx, url, ct, fwInfo("codes", mesos.FrameworkInfo_Capability_PARTITION_AWARE))
			if got := sched.Header.Get("Content-Type"); got != ct {
				t.Errorf("SUBSCRIBE response Content-Type = %q, want %q", got, ct)
			}
			if sched.StreamID == "" {
				t.Fatal("SUBSCRIBE response has no Mesos-Stream-Id")
			}
			revive := &scheduler.Call{Type: scheduler.Call_REVIVE, FrameworkID: &mesos.FrameworkID{Value: sched.FrameworkID}}
			if code, msg, _ := simtest.Post(ctx, url, ct, "", revive); code != http.StatusBadRequest || !strings.Contains(msg, "Mesos-Stream-Id") {
				t.Errorf("no stream id: got %d %q, want 400", code, msg)
			}
			if code, msg, _ := simtest.Post(ctx, url, ct, "wrong", revive); code != http.StatusBadRequest || !strings.Contains(msg, "stream ID") {
				t.Errorf("wrong stream id: got %d %q, want 400", code, msg)
			}
			if code, msg, _ := simtest.Post(ctx, url, ct, sched.StreamID, revive); code != http.StatusAccepted {
				t.Errorf("valid call: got %d %q, want 202", code, msg)
			}
			ack := &scheduler.Call{Type: scheduler.Call_ACKNOWLEDGE, FrameworkID: &mesos.FrameworkID{Value: sched.FrameworkID},
				Acknowledge: &scheduler.Call_Acknowledge{AgentID: mesos.AgentID{Value: "a"}, TaskID: mesos.TaskID{Value: "t"}, UUID: []byte("short")}}
			if code, _, _ := simtest.Post(ctx, url, ct, sched.StreamID, ack); code != http.StatusBadRequest {
				t.Errorf("ACKNOWLEDGE with a bad uuid: got %d, want 400", code)
			}
			// Oversized body.
			big := make([]byte, 5<<20)
			if code, msg, _ := post(t, ctx, http.MethodPost, url, h, big); code != http.StatusBadRequest || msg == "" {
				t.Errorf("oversized body: got %d %q, want 400 with a message", code, msg)
			}
		})
	}
}

// TestMalformedJSON covers JSON-only failures: bad syntax, unknown enum name, missing required field.
func TestMalformedJSON(t *testing.T) {
	s := startSim(t, mesossim.Config{})
	ctx := testCtx(t)
	h := map[string]string{"Content-Type": wire.JSON, "Accept": wire.JSON}
	cases := map[string]string{
		"syntax":       `{"type": "SUBSCRIBE",`,
		"unknown enum": `{"type": "SUBSCRIBE_PLEASE", "subscribe": {"framework_info": {"user": "u", "name": "n"}}}`,
		"missing user": `{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"name": "n"}}}`,
		"wrong type":   `{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": 5, "name": "n"}}}`,
	}
	for name, body := range cases {
		if code, msg, _ := post(t, ctx, http.MethodPost, s.MasterURL(), h, []byte(body)); code != http.StatusBadRequest || msg == "" {
			t.Errorf("%s: got %d %q, want 400 with a message", name, code, msg)
		}
	}
	// Unknown fields are ignored, as protobuf JSON parsing in Mesos does.
	body := `{"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "n", "no_such_field": 1}}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.MasterURL()+"/api/v1/scheduler", strings.NewReader(body))
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("unknown field: got %d, want 200", resp.StatusCode)
	}
}

func TestSubscribeHeartbeatOffers(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048;disk:1000;ports:[31000-31999]")}})
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("hb"))
			if sub := sched.Subscribed; sub.GetHeartbeatIntervalSeconds() != 0.3 || sub.MasterInfo == nil || sub.MasterInfo.Address.GetPort() == 0 {
				t.Fatalf("SUBSCRIBED event = %v", sub)
			}
			if _, err := sched.Next(ctx, scheduler.Event_HEARTBEAT); err != nil {
				t.Fatal(err)
			}
			o := nextOffer(t, ctx, sched)
			if o.FrameworkID.Value != sched.FrameworkID || o.Hostname != "agent-0" {
				t.Errorf("offer framework/hostname = %s/%s", o.FrameworkID.Value, o.Hostname)
			}
			if o.AllocationInfo != nil {
				t.Errorf("non-MULTI_ROLE framework got allocation_info %v", o.AllocationInfo)
			}
			var cpus, mem float64
			var ports bool
			for _, r := range o.Resources {
				if r.AllocationInfo != nil {
					t.Errorf("non-MULTI_ROLE resource has allocation_info")
				}
				switch r.Name {
				case "cpus":
					cpus = r.GetScalar().GetValue()
				case "mem":
					mem = r.GetScalar().GetValue()
				case "ports":
					ports = len(r.GetRanges().GetRange()) == 1 && r.Ranges.Range[0].Begin == 31000
				}
			}
			if cpus != 4 || mem != 2048 || !ports {
				t.Errorf("offer resources = %v", o.Resources)
			}
			// Give it back so the next subtest's framework can get it.
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
