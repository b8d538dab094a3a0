// Package cri asks the container runtime, over CRI, what runs.
package cri

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/types"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podUIDLabel is the label the kubelet puts on every sandbox and container.
const podUIDLabel = "io.kubernetes.pod.uid"

// Runtime is a CRI runtime service client.
type Runtime struct {
	conn *grpc.ClientConn
	rs   runtimeapi.RuntimeServiceClient
}

// Dial connects to endpoint (unix:///run/containerd/containerd.sock or a path).
func Dial(endpoint string) (*Runtime, error) {
	target := endpoint
	if !strings.Contains(target, "://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("connecting to the container runtime at %s: %w", endpoint, err)
	}
	return &Runtime{conn: conn, rs: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

// RunningContainers counts the pod's running containers.
func (r *Runtime) RunningContainers(ctx context.Context, uid types.UID) (int, error) {
	resp, err := r.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{podUIDLabel: string(uid)},
	}})
	if err != nil {
		return 0, fmt.Errorf("listing the containers of pod %s: %w", uid, err)
	}
	return len(resp.Containers), nil
}

// ReadySandboxes counts the pod's sandboxes that still hold its network
// and cgroup (the kubelet removes them after the containers).
func (r *Runtime) ReadySandboxes(ctx context.Context, uid types.UID) (int, error) {
	resp, err := r.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State:         &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY},
		LabelSelector: map[string]string{podUIDLabel: string(uid)},
	}})
	if err != nil {
		return 0, fmt.Errorf("listing the sandboxes of pod %s: %w", uid, err)
	}
	return len(resp.Items), nil
}

// Close drops the connection.
func (r *Runtime) Close() error { return r.conn.Close() }
