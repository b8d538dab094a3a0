package offers

import (
	"context"
	"time"
)

// contextWithDone is a context whose Done channel the test controls.
type contextWithDone struct{ done <-chan struct{} }

func (c contextWithDone) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c contextWithDone) Done() <-chan struct{}       { return c.done }
func (c contextWithDone) Value(any) any               { return nil }
func (c contextWithDone) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}
