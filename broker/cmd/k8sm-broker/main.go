// Command k8sm-broker is the Mesos framework of k8sm.
package main

import (
	"github.com/k8sm/k8sm/broker/app"
	"github.com/k8sm/k8sm/pkg/signals"
)

func main() {
	// The first SIGTERM shuts down gracefully; a second ends a stuck one.
	app.Main(signals.Context())
}
