// Package cri asks the container runtime, over CRI, what runs.
package cri

import (
	"context"
	"encoding/json"
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

// Sandbox is a pod sandbox the runtime keeps, with the cgroup its pod's
// containers were put under.
type Sandbox struct {
	ID, Namespace, Name string
	UID                 types.UID
	CgroupParent        string
}

// Sandboxes lists every pod sandbox of the runtime, ready or not.
func (r *Runtime) Sandboxes(ctx context.Context) ([]Sandbox, error) {
	resp, err := r.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing pod sandboxes: %w", err)
	}
	var out []Sandbox
	for _, s := range resp.Items {
		sb := Sandbox{ID: s.Id, UID: types.UID(s.GetMetadata().GetUid()), Namespace: s.GetMetadata().GetNamespace(), Name: s.GetMetadata().GetName()}
		st, err := r.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: s.Id, Verbose: true})
		if err != nil {
			return nil, fmt.Errorf("reading the status of sandbox %s: %w", s.Id, err)
		}
		// containerd's verbose status carries the sandbox's config.
		var info struct {
			Config struct {
				Linux struct {
					CgroupParent string `json:"cgroup_parent"`
				} `json:"linux"`
			} `json:"config"`
		}
		if raw := st.GetInfo()["info"]; raw != "" {
			_ = json.Unmarshal([]byte(raw), &info)
		}
		sb.CgroupParent = info.Config.Linux.CgroupParent
		out = append(out, sb)
	}
	return out, nil
}

// RemoveSandbox stops the sandbox (its network goes) and removes it with
// its containers.
func (r *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	if _, err := r.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("stopping sandbox %s: %w", id, err)
	}
	if _, err := r.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		return fmt.Errorf("removing sandbox %s: %w", id, err)
	}
	return nil
}
