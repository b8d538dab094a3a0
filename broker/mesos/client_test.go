package mesos_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
)

// recorder is a Handler that remembers events and can refuse updates.
type recorder struct {
	mu           sync.Mutex
	events       []*scheduler.Event
	refuse       func(*scheduler.Event) error
	block        func(context.Context, *scheduler.Event)
	disconnected int
	ch           chan *scheduler.Event
}

func newRecorder() *recorder { return &recorder{ch: make(chan *scheduler.Event, 1000)} }

func (r *recorder) HandleEvent(ctx context.Context, ev *scheduler.Event) error {
	r.mu.Lock()
	r.events = append(r.events, ev)
	refuse, block := r.refuse, r.block
	r.mu.Unlock()
	r.ch <- ev
	if block != nil {
		block(ctx, ev)
	}
	if refuse != nil {
		return refuse(ev)
	}
	return nil
}

func (r *recorder) Disconnected(context.Context) {
	r.mu.Lock()
	r.disconnected++
	r.mu.Unlock()
}

func (r *recorder) next(t *testing.T, ctx context.Context, typ scheduler.Event_Type) *scheduler.Event {
	t.Helper()
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for a %s event: %v", typ, ctx.Err())
		case ev := <-r.ch:
			if ev.Type == typ {
				return ev
			}
		}
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeMaster is a scripted master: each SUBSCRIBE gets SUBSCRIBED and then
// the events of script (JSON records), and is then held open silently.
type fakeMaster struct {
	mu         sync.Mutex
	subscribes []map[string]any
	calls      []map[string]any
	script     []string
	heartbeat  float64
	// beat: heartbeats after the script (else silence).
	beat     bool
	callSeen chan string
	// refuse answers calls of a type with this status code.
	refuse map[string]int
	// beats counts heartbeats sent; ended is closed when the first
	// stream ends (nil: not watched).
	beats atomic.Int64
	ended chan struct{}
}

func (f *fakeMaster) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var call map[string]any
	if err := json.Unmarshal(body, &call); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if call["type"] != "SUBSCRIBE" {
		if r.Header.Get("Mesos-Stream-Id") != "stream-1" {
			http.Error(w, "missing Mesos-Stream-Id", http.StatusBadRequest)
			return
		}
		if code := f.refuse[call["type"].(string)]; code != 0 {
			http.Error(w, "refused by the test", code)
			return
		}
		f.mu.Lock()
		f.calls = append(f.calls, call)
		f.mu.Unlock()
		f.callSeen <- call["type"].(string)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	f.mu.Lock()
	f.subscribes = append(f.subscribes, call)
	script := f.script
	if f.ended != nil && len(f.subscribes) == 1 {
		defer close(f.ended)
	}
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Mesos-Stream-Id", "stream-1")
	w.WriteHeader(http.StatusOK)
	send := func(rec string) {
		// Not through fmt: a blocked write would hold a copy of rec.
		_, _ = io.WriteString(w, strconv.Itoa(len(rec))+"\n")
		_, _ = io.WriteString(w, rec)
		w.(http.Flusher).Flush()
	}
	send(fmt.Sprintf(`{"type":"SUBSCRIBED","subscribed":{"framework_id":{"value":"fw-1"},"heartbeat_interval_seconds":%g}}`, f.heartbeat))
	for _, rec := range script {
		send(rec)
	}
	for f.beat {
		select {
		case <-r.Context().Done():
			return
		case <-time.After(time.Duration(f.heartbeat * float64(time.Second))):
			send(`{"type":"HEARTBEAT"}`)
			f.beats.Add(1)
		}
	}
	// Then silence: no heartbeats, as from a master behind a dead link.
	<-r.Context().Done()
}

func (f *fakeMaster) subscribeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subscribes)
}

func startClient(t *testing.T, ctx context.Context, cfg brokermesos.Config, h brokermesos.Handler) *brokermesos.Client {
	t.Helper()
	c, err := brokermesos.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, h) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// TestWatchdogResubscribes: a master that stops sending heartbeats is given
// up on, and the client subscribes again with the framework id it stored.
func TestWatchdogResubscribes(t *testing.T) {
	ctx := testCtx(t)
	fm := &fakeMaster{heartbeat: 0.05, callSeen: make(chan string, 100)}
	srv := httptest.NewServer(fm)
	t.Cleanup(srv.Close)
	rec := newRecorder()
	store := &brokermesos.MemoryIDStore{}
	startClient(t, ctx, brokermesos.Config{
		Detector: brokermesos.StaticMaster(srv.URL), Store: store,
		MediaType: string(codecs.MediaTypeJSON), MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, rec)
	rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
	rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
	fm.mu.Lock()
	second := fm.subscribes[1]
	fm.mu.Unlock()
	got, _ := json.Marshal(second["framework_id"])
	if string(got) != `{"value":"fw-1"}` {
		t.Errorf("re-subscription carried framework_id %s, want fw-1 (the stored id)", got)
	}
	info := second["subscribe"].(map[string]any)["framework_info"].(map[string]any)
	if id, _ := json.Marshal(info["id"]); string(id) != `{"value":"fw-1"}` {
		t.Errorf("re-subscription's framework_info.id is %s, want fw-1", id)
	}
	if id, _ := store.Get(ctx); id != "fw-1" {
		t.Errorf("stored framework id %q, want fw-1", id)
	}
}

// TestAckAfterHandling: an UPDATE is acknowledged only once the handler
// accepted it; an update the handler failed stays unacknowledged.
func TestAckAfterHandling(t *testing.T) {
	ctx := testCtx(t)
	fm := &fakeMaster{heartbeat: 60, callSeen: make(chan string, 100), script: []string{
		`{"type":"UPDATE","update":{"status":{"task_id":{"value":"refused"},"state":"TASK_RUNNING","agent_id":{"value":"a1"},"uuid":"AAEC"}}}`,
		`{"type":"UPDATE","update":{"status":{"task_id":{"value":"no-uuid"},"state":"TASK_LOST","agent_id":{"value":"a1"}}}}`,
		`{"type":"UPDATE","update":{"status":{"task_id":{"value":"handled"},"state":"TASK_RUNNING","agent_id":{"value":"a1"},"uuid":"AwQF"}}}`,
	}}
	srv := httptest.NewServer(fm)
	t.Cleanup(srv.Close)
	rec := newRecorder()
	handled := make(chan string, 10)
	rec.refuse = func(ev *scheduler.Event) error {
		if ev.Type != scheduler.Event_UPDATE {
			return nil
		}
		id := ev.GetUpdate().GetStatus().TaskID.Value
		handled <- id
		if id == "refused" {
			return errors.New("API server unavailable")
		}
		return nil
	}
	startClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(srv.URL), MediaType: string(codecs.MediaTypeJSON)}, rec)
	// Updates of different tasks are handled concurrently (one task's in
	// order): every one is handled, in any order.
	seen := map[string]bool{}
	for len(seen) < 3 {
		select {
		case got := <-handled:
			seen[got] = true
		case <-ctx.Done():
			t.Fatalf("handled %v, want refused, no-uuid and handled: %v", seen, ctx.Err())
		}
	}
	select {
	case typ := <-fm.callSeen:
		if typ != "ACKNOWLEDGE" {
			t.Fatalf("call %s, want ACKNOWLEDGE", typ)
		}
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	if len(fm.calls) != 1 {
		t.Fatalf("%d calls, want exactly one ACKNOWLEDGE: %v", len(fm.calls), fm.calls)
	}
	ack := fm.calls[0]["acknowledge"].(map[string]any)
	if tid, _ := json.Marshal(ack["task_id"]); !strings.Contains(string(tid), "handled") || ack["uuid"] != "AwQF" {
		t.Errorf("acknowledged %v, want task handled with uuid AwQF", ack)
	}
}

// TestNotSubscribed: calls fail clearly while no subscription is up.
func TestNotSubscribed(t *testing.T) {
	c, err := brokermesos.New(brokermesos.Config{Detector: brokermesos.StaticMaster("http://127.0.0.1:1")})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Call(context.Background(), &scheduler.Call{Type: scheduler.Call_REVIVE})
	if !errors.Is(err, brokermesos.ErrNotSubscribed) {
		t.Fatalf("Call before subscribing: %v, want ErrNotSubscribed", err)
	}
	if _, err := brokermesos.New(brokermesos.Config{Detector: brokermesos.StaticMaster("x"), MediaType: "text/plain"}); err == nil || !strings.Contains(err.Error(), "text/plain") {
		t.Fatalf("bad media type: %v", err)
	}
}

// switchingDetector names first one master, then, once switched, another;
// the channel it returned for the first is closed at the switch, as the
// ZooKeeper detector does on a leader change.
type switchingDetector struct {
	mu      sync.Mutex
	current string
	changed chan struct{}
}

func (d *switchingDetector) Master(context.Context) (string, <-chan struct{}, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current, d.changed, nil
}

func (d *switchingDetector) switchTo(url string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.current = url
	close(d.changed)
	d.changed = make(chan struct{})
}

// TestLeaderChangeDuringSubscribe: a master that takes the SUBSCRIBE but
// never answers (a dying process) does not hold the client once ZooKeeper
// names another leader: it subscribes to the new one.
func TestLeaderChangeDuringSubscribe(t *testing.T) {
	// Well below the HTTP client's own request timeout, which would free
	// the client too, a minute later.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	hung := make(chan struct{})
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The server notices a closed connection only once the body is read.
		_, _ = io.ReadAll(r.Body)
		select {
		case hung <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	t.Cleanup(stuck.Close)
	fm := &fakeMaster{heartbeat: 60, callSeen: make(chan string, 10)}
	healthy := httptest.NewServer(fm)
	t.Cleanup(healthy.Close)

	det := &switchingDetector{current: stuck.URL, changed: make(chan struct{})}
	rec := newRecorder()
	// CallTimeout far beyond the test's deadline: only the leader change
	// can free the client.
	startClient(t, ctx, brokermesos.Config{
		Detector: det, MediaType: string(codecs.MediaTypeJSON), CallTimeout: time.Hour,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, rec)
	select {
	case <-hung:
	case <-ctx.Done():
		t.Fatal("the client never sent SUBSCRIBE to the first master")
	}
	det.switchTo(healthy.URL)
	rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
	if n := fm.subscribeCount(); n != 1 {
		t.Errorf("the new leader saw %d SUBSCRIBE calls, want 1", n)
	}
}

// TestSubscribeTimeout: a master that never answers SUBSCRIBE is given up
// after CallTimeout and tried again, rather than waited on for ever.
func TestSubscribeTimeout(t *testing.T) {
	ctx := testCtx(t)
	var attempts atomic.Int32
	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		attempts.Add(1)
		<-r.Context().Done()
	}))
	t.Cleanup(stuck.Close)
	startClient(t, ctx, brokermesos.Config{
		Detector: brokermesos.StaticMaster(stuck.URL), MediaType: string(codecs.MediaTypeJSON),
		CallTimeout: 100 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, newRecorder())
	for attempts.Load() < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d SUBSCRIBE attempts to a silent master, want 3 or more", attempts.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestSlowStatusHandlingKeepsTheSubscription: a status update whose handling
// hangs (a slow API server) neither stalls the other updates nor starves the
// heartbeat watchdog; its handling is bounded by StatusTimeout and it stays
// unacknowledged, for Mesos to send again.
func TestSlowStatusHandlingKeepsTheSubscription(t *testing.T) {
	ctx := testCtx(t)
	fm := &fakeMaster{heartbeat: 0.05, beat: true, callSeen: make(chan string, 100), script: []string{
		`{"type":"UPDATE","update":{"status":{"task_id":{"value":"slow"},"state":"TASK_RUNNING","agent_id":{"value":"a1"},"uuid":"AAEC"}}}`,
		`{"type":"UPDATE","update":{"status":{"task_id":{"value":"fast"},"state":"TASK_RUNNING","agent_id":{"value":"a1"},"uuid":"AwQF"}}}`,
	}}
	srv := httptest.NewServer(fm)
	t.Cleanup(srv.Close)
	rec := newRecorder()
	slowEnded := make(chan error, 10)
	rec.refuse = func(ev *scheduler.Event) error {
		if ev.Type != scheduler.Event_UPDATE || ev.GetUpdate().GetStatus().TaskID.Value != "slow" {
			return nil
		}
		return errors.New("the API server did not answer")
	}
	rec.block = func(hctx context.Context, ev *scheduler.Event) {
		if ev.Type != scheduler.Event_UPDATE || ev.GetUpdate().GetStatus().TaskID.Value != "slow" {
			return
		}
		// An API call without its own deadline, on a server that does not
		// answer (for a few seconds, to end the test on unbounded code).
		select {
		case <-hctx.Done():
			slowEnded <- hctx.Err()
		case <-time.After(3 * time.Second):
			slowEnded <- errors.New("not bounded")
		}
	}
	c := startClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(srv.URL), MediaType: string(codecs.MediaTypeJSON),
		StatusTimeout: time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, rec)
	select {
	case typ := <-fm.callSeen:
		if typ != "ACKNOWLEDGE" {
			t.Fatalf("call %s, want the ACKNOWLEDGE of task fast", typ)
		}
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if len(slowEnded) > 0 {
		t.Errorf("task fast was acknowledged only after task slow's handling ended: updates of other tasks waited for it")
	}
	select {
	case err := <-slowEnded:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the slow handling ended with %v, want its StatusTimeout", err)
		}
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	// 20 heartbeat intervals passed while the update was handled.
	if n := fm.subscribeCount(); n != 1 || c.Subscriptions() != 1 {
		t.Errorf("subscribed %d times (client: %d), want once: a slow status dropped the subscription", n, c.Subscriptions())
	}
	fm.mu.Lock()
	defer fm.mu.Unlock()
	for _, call := range fm.calls {
		if tid, _ := json.Marshal(call["acknowledge"].(map[string]any)["task_id"]); strings.Contains(string(tid), "slow") {
			t.Errorf("the update whose handling timed out was acknowledged")
		}
	}
}

// TestFailedCallKeepsTheSubscription: a call the master refuses (or one
// that times out under load) fails alone; the event stream stays open.
// mesos-go's httpsched caller, with its default endpoint candidate,
// cancelled its stream on any failed call: how the broker dropped its own
// subscription at 10,000 agents.
func TestFailedCallKeepsTheSubscription(t *testing.T) {
	ctx := testCtx(t)
	fm := &fakeMaster{heartbeat: 0.05, beat: true, callSeen: make(chan string, 100),
		refuse: map[string]int{"REVIVE": http.StatusBadRequest, "DECLINE": http.StatusServiceUnavailable}, ended: make(chan struct{})}
	srv := httptest.NewServer(fm)
	t.Cleanup(srv.Close)
	rec := newRecorder()
	c := startClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(srv.URL), MediaType: string(codecs.MediaTypeJSON),
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}, rec)
	rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
	if err := c.Call(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE}); err == nil {
		t.Fatal("a REVIVE the master refused returned no error")
	}
	if err := c.Call(ctx, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{}}); err == nil {
		t.Fatal("a DECLINE the master refused returned no error")
	}
	// The stream must carry on: ten more heartbeats on it.
	from := fm.beats.Load()
	for fm.beats.Load() < from+10 {
		select {
		case <-fm.ended:
			t.Fatalf("the subscription stream ended after a refused call (subscribed %d times)", fm.subscribeCount())
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := c.Call(ctx, &scheduler.Call{Type: scheduler.Call_SUPPRESS}); err != nil {
		t.Errorf("a call after the refused ones: %v", err)
	}
	if n := fm.subscribeCount(); n != 1 || c.Subscriptions() != 1 {
		t.Errorf("subscribed %d times (client: %d), want once", n, c.Subscriptions())
	}
}
