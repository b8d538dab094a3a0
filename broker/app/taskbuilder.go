package app

import (
	"encoding/json"
	"fmt"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"

	"github.com/k8sm/k8sm/broker/grpcserver"
)

// The TaskInfo contract with the executor, as pkg/taskinfo describes it:
// pod JSON in data, labels naming the pod, one versioned executor per agent.
// It is written out here until pkg/taskinfo is on main; then this file
// becomes a call to it.
const (
	labelNamespace  = "k8sm.io/namespace"
	labelName       = "k8sm.io/name"
	labelUID        = "k8sm.io/uid"
	executorVersion = "v1"
)

type taskBuilder struct {
	command string
	args    []string
	uris    []mesos.CommandInfo_URI
}

func (b taskBuilder) NewTask(pod *v1.Pod, agent mesos.AgentID, res []mesos.Resource, exec *mesos.ExecutorInfo) (mesos.TaskInfo, error) {
	if pod.UID == "" {
		return mesos.TaskInfo{}, fmt.Errorf("pod %s/%s has no UID", pod.Namespace, pod.Name)
	}
	data, err := json.Marshal(pod)
	if err != nil {
		return mesos.TaskInfo{}, fmt.Errorf("encoding pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	ns, name, uid := pod.Namespace, pod.Name, string(pod.UID)
	return mesos.TaskInfo{
		Name:      ns + "/" + name,
		TaskID:    mesos.TaskID{Value: grpcserver.TaskID(pod.UID)},
		AgentID:   agent,
		Resources: res,
		Executor:  exec,
		Data:      data,
		Labels: &mesos.Labels{Labels: []mesos.Label{
			{Key: labelNamespace, Value: &ns}, {Key: labelName, Value: &name}, {Key: labelUID, Value: &uid},
		}},
	}, nil
}

func (b taskBuilder) NewExecutorInfo(fw mesos.FrameworkID) *mesos.ExecutorInfo {
	shell := false
	cmd := b.command
	name, source := "k8sm executor (kubelet)", "k8sm"
	return &mesos.ExecutorInfo{
		ExecutorID:  mesos.ExecutorID{Value: "k8sm-executor-" + executorVersion},
		FrameworkID: &fw,
		Type:        mesos.ExecutorInfo_CUSTOM,
		Name:        &name,
		Source:      &source,
		Command:     &mesos.CommandInfo{Value: &cmd, Shell: &shell, Arguments: append([]string{cmd}, b.args...), URIs: b.uris},
	}
}
