package wire

import (
	"context"
	"net/http"
	"sync"
)

// Stream is the server side of a RecordIO event stream held open on an HTTP
// response. Sends never block the caller (the master holds its state lock
// while it sends), so records queue until the writer goroutine drains them.
type Stream struct {
	ContentType string
	ID          string

	mu     sync.Mutex
	queue  [][]byte
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

// NewStream prepares a stream; Serve must then run in the HTTP handler.
func NewStream(contentType, id string) *Stream {
	return &Stream{ContentType: contentType, ID: id, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Send encodes m and queues it. It reports false once the stream is closed.
func (s *Stream) Send(m Message) bool {
	b, err := Encode(s.ContentType, m)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.queue = append(s.queue, b)
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// Close ends the stream after the queued records are written.
func (s *Stream) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Done is closed when Serve has returned, i.e. the client is gone or Close was called.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Serve writes queued records to w until Close, ctx ends or the client goes away.
// headers must already be set by the caller; Serve writes the 200 status.
func (s *Stream) Serve(ctx context.Context, w http.ResponseWriter) {
	defer close(s.done)
	defer s.Close()
	flusher, _ := w.(http.Flusher)
	w.WriteHeader(http.StatusOK)
	if flusher != nil {
		flusher.Flush()
	}
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		closed := s.closed
		s.mu.Unlock()
		for _, b := range batch {
			if err := WriteRecord(w, b); err != nil {
				return
			}
		}
		if len(batch) > 0 && flusher != nil {
			flusher.Flush()
		}
		if closed {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
	}
}
