package app

import (
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// taskBuilder is the framework's TaskBuilder over pkg/taskinfo, the contract
// with the executor: pod JSON in data, labels naming the pod, one versioned
// executor per agent.
type taskBuilder struct {
	exec taskinfo.ExecutorConfig
}

func (b taskBuilder) NewTask(pod *v1.Pod, agent mesos.AgentID, res []mesos.Resource, exec *mesos.ExecutorInfo) (mesos.TaskInfo, error) {
	return taskinfo.NewTask(pod, agent, res, exec)
}

// NewExecutorInfo leaves the resources to the framework, which cuts them
// from the offers.
func (b taskBuilder) NewExecutorInfo(fw mesos.FrameworkID) *mesos.ExecutorInfo {
	ei := taskinfo.NewExecutorInfo(fw, b.exec)
	ei.Resources = nil
	return ei
}
