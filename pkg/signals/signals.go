// Package signals gives a program its lifetime as a context, as Kubernetes
// components have it: the first SIGINT or SIGTERM starts a graceful
// shutdown, a second one ends a shutdown that is stuck. It is the behaviour
// of k8s.io/apiserver/pkg/server.SetupSignalContext (kube-scheduler's),
// without linking the generic API server that package brings.
package signals

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// ExitCode is the status the process exits with on the second signal.
const ExitCode = 1

// Context returns a context cancelled by the first SIGINT or SIGTERM; a
// second signal exits the process at once with ExitCode. Call it once.
func Context() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	c := make(chan os.Signal, 2)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-c
		cancel()
		<-c
		os.Exit(ExitCode)
	}()
	return ctx
}
