package app

import (
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// taskBuilder is the framework's TaskBuilder over pkg/taskinfo, the contract
// with the executor: pod JSON in data, labels naming the pod, one executor
// per agent whose ExecutorInfo is a pure function of the broker's flags.
type taskBuilder struct {
	exec taskinfo.ExecutorConfig
	// resources of the executor, charged once per agent and role.
	resources podresources.Resources
}

func (b taskBuilder) NewTask(pod *v1.Pod, agent mesos.AgentID, res []mesos.Resource, exec *mesos.ExecutorInfo) (mesos.TaskInfo, error) {
	return taskinfo.NewTask(pod, agent, res, exec)
}

// NewExecutorInfo gives the executor its resources in the one shape
// offers.Take cuts them (podresources.TakeUnreserved), so that every broker
// process sends the same ExecutorInfo to an agent.
func (b taskBuilder) NewExecutorInfo(fw mesos.FrameworkID, role string) *mesos.ExecutorInfo {
	c := b.exec
	c.Resources = podresources.ToMesos(b.resources, role)
	return taskinfo.NewExecutorInfo(fw, c)
}
