package app

import (
	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// executorBuilder is the framework's ExecutorBuilder over pkg/taskinfo, the
// contract with the executor: one executor per agent whose ExecutorInfo is a
// pure function of the broker's flags.
type executorBuilder struct {
	exec taskinfo.ExecutorConfig
	// resources of the executor, charged once per agent and role.
	resources podresources.Resources
}

// NewExecutorInfo gives the executor its resources in the one shape
// offers.Take cuts them (podresources.TakeUnreserved), so that every broker
// process sends the same ExecutorInfo to an agent.
func (b executorBuilder) NewExecutorInfo(fw mesos.FrameworkID, role string) *mesos.ExecutorInfo {
	c := b.exec
	c.Resources = podresources.ToMesos(b.resources, role)
	return taskinfo.NewExecutorInfo(fw, c)
}
