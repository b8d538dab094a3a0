// Command k8sm-executor is the k8sm Mesos executor: the Mesos agent starts
// it (one per agent and framework) from the broker's ExecutorInfo; it runs
// an embedded kubelet registered as the agent's Node and runs exactly the
// pods Mesos launched on it. See executor/README.md.
package main

import (
	"os"

	"github.com/k8sm/k8sm/executor/app"
)

func main() {
	os.Exit(app.Main(os.Args, os.Getenv, os.Environ(), os.Stderr))
}
