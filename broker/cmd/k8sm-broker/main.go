// Command k8sm-broker is the Mesos framework of k8sm.
package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/k8sm/k8sm/broker/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	app.Main(ctx)
}
