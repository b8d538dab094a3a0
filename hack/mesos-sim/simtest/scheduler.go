// Package simtest is a minimal raw v1 scheduler client for conformance
// tests: it shows exactly what a scheduler sees on the wire (status codes,
// headers, every event) in JSON or protobuf, with no client-library logic in
// between.
package simtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// Scheduler is one subscription.
type Scheduler struct {
	URL         string
	ContentType string
	StreamID    string
	FrameworkID string
	Header      http.Header
	// Subscribed is the SUBSCRIBED event that opened the stream.
	Subscribed *scheduler.Event_Subscribed

	conn Conn

	mu     sync.Mutex
	events []*scheduler.Event
	next   int
	closed error
	wake   chan struct{}
	body   io.Closer
}

// Conn is how requests reach the master: the HTTP client (one that trusts
// the master's CA for https) and the basic-auth principal and secret.
// The zero Conn is plain, unauthenticated http.
type Conn struct {
	Client            *http.Client
	Principal, Secret string
}

func (c Conn) do(req *http.Request) (*http.Response, error) {
	if c.Principal != "" {
		req.SetBasicAuth(c.Principal, c.Secret)
	}
	cli := noRedirect
	if c.Client != nil {
		// Redirects stay visible to the test whatever client it gave.
		cp := *c.Client
		cp.CheckRedirect = noRedirect.CheckRedirect
		cli = &cp
	}
	return cli.Do(req)
}

// Post sends a call and returns the status code and body text.
func Post(ctx context.Context, url, contentType, streamID string, call *scheduler.Call) (int, string, error) {
	return Conn{}.Post(ctx, url, contentType, streamID, call)
}

// Post sends a call over c.
func (c Conn) Post(ctx context.Context, url, contentType, streamID string, call *scheduler.Call) (int, string, error) {
	b, err := wire.Encode(contentType, call)
	if err != nil {
		return 0, "", err
	}
	return c.PostRaw(ctx, url, contentType, streamID, b)
}

// PostRaw sends a raw body to /api/v1/scheduler.
func PostRaw(ctx context.Context, url, contentType, streamID string, body []byte) (int, string, error) {
	return Conn{}.PostRaw(ctx, url, contentType, streamID, body)
}

// PostRaw sends a raw body to /api/v1/scheduler over c.
func (c Conn) PostRaw(ctx context.Context, url, contentType, streamID string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/scheduler", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if streamID != "" {
		req.Header.Set("Mesos-Stream-Id", streamID)
	}
	resp, err := c.do(req)
	if err != nil {
		return 0, "", fmt.Errorf("posting call: %w", err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(msg), nil
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// Subscribe opens a subscription and waits for SUBSCRIBED.
func Subscribe(ctx context.Context, url, contentType string, info mesos.FrameworkInfo) (*Scheduler, error) {
	return Conn{}.Subscribe(ctx, url, contentType, info)
}

// Subscribe subscribes over c; the subscription's calls use c too.
func (c Conn) Subscribe(ctx context.Context, url, contentType string, info mesos.FrameworkInfo) (*Scheduler, error) {
	call := &scheduler.Call{Type: scheduler.Call_SUBSCRIBE, FrameworkID: info.ID, Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &info}}
	b, err := wire.Encode(contentType, call)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/scheduler", bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", contentType)
	resp, err := c.do(req)
	if err != nil {
		return nil, fmt.Errorf("subscribing: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("subscribing: status %d: %s", resp.StatusCode, msg)
	}
	s := &Scheduler{URL: url, ContentType: contentType, StreamID: resp.Header.Get("Mesos-Stream-Id"), Header: resp.Header,
		conn: c, wake: make(chan struct{}, 1), body: resp.Body}
	go s.read(resp.Body, resp.Header.Get("Content-Type"))
	ev, err := s.Next(ctx, scheduler.Event_SUBSCRIBED, scheduler.Event_ERROR)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	if ev.Type == scheduler.Event_ERROR {
		resp.Body.Close()
		return s, fmt.Errorf("subscribing: ERROR event: %s", ev.Error.Message)
	}
	s.FrameworkID = ev.Subscribed.FrameworkID.Value
	s.Subscribed = ev.Subscribed
	return s, nil
}

func (s *Scheduler) read(body io.Reader, contentType string) {
	rd := wire.NewReader(body, 0)
	var err error
	for {
		var rec []byte
		rec, err = rd.ReadRecord()
		if err != nil {
			break
		}
		var ev scheduler.Event
		if err = wire.Decode(contentType, rec, &ev); err != nil {
			break
		}
		s.mu.Lock()
		s.events = append(s.events, &ev)
		s.mu.Unlock()
		s.signal()
	}
	if err == nil {
		err = io.EOF
	}
	s.mu.Lock()
	s.closed = err
	s.mu.Unlock()
	s.signal()
}

func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// ErrClosed is returned once the stream has ended and no matching event is left.
var ErrClosed = errors.New("event stream closed")

// Wait returns the first event not yet consumed that matches pred, consuming
// it (and nothing else); it fails when ctx ends or the stream closes.
func (s *Scheduler) Wait(ctx context.Context, pred func(*scheduler.Event) bool) (*scheduler.Event, error) {
	for {
		s.mu.Lock()
		for i := s.next; i < len(s.events); i++ {
			if ev := s.events[i]; ev != nil && pred(ev) {
				s.events[i] = nil
				s.mu.Unlock()
				return ev, nil
			}
		}
		closed := s.closed
		s.mu.Unlock()
		if closed != nil {
			return nil, fmt.Errorf("%w: %v", ErrClosed, closed)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for event: %w", ctx.Err())
		case <-s.wake:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Next waits for the next event of one of the given types.
func (s *Scheduler) Next(ctx context.Context, types ...scheduler.Event_Type) (*scheduler.Event, error) {
	return s.Wait(ctx, func(e *scheduler.Event) bool {
		for _, t := range types {
			if e.Type == t {
				return true
			}
		}
		return false
	})
}

// Update waits for an UPDATE of a task in a given state.
func (s *Scheduler) Update(ctx context.Context, taskID string, state mesos.TaskState) (*mesos.TaskStatus, error) {
	ev, err := s.Wait(ctx, func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_UPDATE && e.Update.Status.TaskID.Value == taskID && e.Update.Status.GetState() == state
	})
	if err != nil {
		return nil, fmt.Errorf("waiting for %s of task %s: %w", state, taskID, err)
	}
	return &ev.Update.Status, nil
}

// Events returns every event received so far, consumed or not.
func (s *Scheduler) Events() []*scheduler.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*scheduler.Event, 0, len(s.events))
	for _, e := range s.events {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

// Closed reports whether the stream has ended.
func (s *Scheduler) Closed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed != nil
}

// Call sends a call on this subscription (framework id and stream id filled in).
func (s *Scheduler) Call(ctx context.Context, call *scheduler.Call) (int, string, error) {
	if call.FrameworkID == nil {
		call.FrameworkID = &mesos.FrameworkID{Value: s.FrameworkID}
	}
	return s.conn.Post(ctx, s.URL, s.ContentType, s.StreamID, call)
}

// MustAccept sends a call and fails unless it gets 202.
func (s *Scheduler) MustAccept(ctx context.Context, call *scheduler.Call) error {
	code, msg, err := s.Call(ctx, call)
	if err != nil {
		return err
	}
	if code != http.StatusAccepted {
		return fmt.Errorf("%s call: status %d: %s", call.Type, code, msg)
	}
	return nil
}

// Ack acknowledges an update if it carries a uuid.
func (s *Scheduler) Ack(ctx context.Context, st *mesos.TaskStatus) error {
	if len(st.UUID) == 0 {
		return nil
	}
	return s.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_ACKNOWLEDGE, Acknowledge: &scheduler.Call_Acknowledge{
		AgentID: *st.AgentID, TaskID: st.TaskID, UUID: st.UUID,
	}})
}

// Close drops the connection.
func (s *Scheduler) Close() { _ = s.body.Close() }
