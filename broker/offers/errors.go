package offers

import (
	"errors"
	"fmt"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// Sentinel errors; match them with errors.Is. The gRPC server maps each to a
// status code.
var (
	// ErrInvalid: the request is malformed (negative resources, no pod uid,
	// bad TTL). Retrying the same request cannot succeed.
	ErrInvalid = errors.New("invalid request")
	// ErrUnknownAgent: no agent with that id or hostname has offered
	// resources to the framework.
	ErrUnknownAgent = errors.New("unknown agent")
	// ErrInsufficient: the agent's outstanding offers do not hold the demand
	// now. Errors wrapping it are *InsufficientError.
	ErrInsufficient = errors.New("insufficient resources")
	// ErrUnknownReservation: no such reservation, not even a recently ended one.
	ErrUnknownReservation = errors.New("unknown reservation")
	// ErrExpired: the reservation's TTL ran out before it was launched.
	ErrExpired = errors.New("reservation expired")
	// ErrLost: the offers behind the reservation were rescinded, used by
	// another launch, or the agent was lost.
	ErrLost = errors.New("reservation lost")
	// ErrReleased: the reservation was released by Unreserve.
	ErrReleased = errors.New("reservation released")
	// ErrStaleEpoch: the claim was made against the offer view of another
	// epoch (Cache.Epoch), a broker that has since restarted.
	ErrStaleEpoch = errors.New("offer view of another broker epoch")
)

// InsufficientError explains why a Reserve did not fit.
type InsufficientError struct {
	AgentID  string
	Hostname string
	Short    podresources.Shortfalls
}

func (e *InsufficientError) Error() string {
	return fmt.Sprintf("agent %s (%s): %s", e.Hostname, e.AgentID, e.Short.Error())
}

// Unwrap lets errors.Is(err, ErrInsufficient) match.
func (e *InsufficientError) Unwrap() error { return ErrInsufficient }

// ErrLaunched: the reservation was already launched.
var ErrLaunched = errors.New("reservation already launched")
