// Package netns runs a piece of a program inside a network namespace: a
// socket opened or a process started there stays there. The local cluster
// gives each Mesos agent a namespace of its own, as if it were a machine of
// its own, and mesos-sim's agents listen and start their executors in it.
package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered the network namespace at
// path (a file such as /run/netns/<name>). Sockets fn opens belong to that
// namespace, and so do processes it starts: the fork happens on the
// calling thread. The thread is never handed back to the Go runtime (its
// goroutine ends locked, so the runtime discards it), so no other goroutine
// ever runs in the namespace by accident; threads the runtime creates
// meanwhile come from its template thread, not this one. An empty path runs
// fn where the program is.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: see above.
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}
