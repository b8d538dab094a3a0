package cluster

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
)

// FreePort finds a loopback TCP port nobody listens on. Tests use it so
// that a test cluster never collides with a user's `make up`. The port is
// below the kernel's ephemeral range (32768-60999 by default): a port the
// kernel hands out can be taken by an outgoing connection before the
// component that was meant to listen on it starts.
func FreePort() (int, error) { return FreePortRange(1) }

// checkPortFree fails with an actionable message when port is taken; env
// names the variable that moves the component elsewhere.
func checkPortFree(component string, port int, env string) error {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("port %d for %s is already in use by another program: stop it, or choose another port with %s=<port>", port, component, env)
	}
	return l.Close()
}

// FreePortRange finds n consecutive loopback ports nobody listens on, below
// the kernel's ephemeral range so that outgoing connections do not take
// them, and returns the first.
func FreePortRange(n int) (int, error) {
	for try := 0; try < 200; try++ {
		first := 20000 + rand.IntN(10000-n)
		ok := true
		for p := first; p < first+n && ok; p++ {
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return first, nil
		}
	}
	return 0, fmt.Errorf("finding %d consecutive free ports: none after 200 tries", n)
}
