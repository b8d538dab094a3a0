//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestExecutorSIGKILLStopsItsPods: a pod's containers live in its
// executor's Mesos container, so an executor killed outright takes them
// with it before the agent reports the task ended (Mesos' accounting stays
// true: nothing of the task runs on), and the next executor on the agent
// removes what containerd keeps of them.
func TestExecutorSIGKILLStopsItsPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	w := startExecutorWorld(t, ctx)

	kept := w.pod("kept", 0)
	keptTask := w.launch(kept)
	w.update(keptTask, mesos.TASK_RUNNING, 3*time.Minute)
	rs := dialRuntime(t, "unix://"+w.cfg.ContainerdSocket())
	pid := containerPID(t, ctx, rs, kept)

	if err := syscall.Kill(w.executorPID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := w.update(keptTask, mesos.TASK_FAILED, 2*time.Minute)
	// The agent says the task ended only once its container is destroyed.
	if processAlive(pid) {
		t.Errorf("pod kept's container (pid %d) still runs after its executor was killed and its task reported %s (%s)",
			pid, st.GetState(), st.GetMessage())
	}

	// The next executor on the agent cleans what containerd kept of kept.
	next := w.pod("next", 0)
	w.update(w.launch(next), mesos.TASK_RUNNING, 3*time.Minute)
	w.poll("containerd to forget pod kept", time.Minute, func() (bool, error) {
		resp, err := rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			LabelSelector: map[string]string{"io.kubernetes.pod.uid": string(kept.UID)}}})
		if err != nil {
			return false, err
		}
		return len(resp.Items) == 0, nil
	})
}

func dialRuntime(t *testing.T, endpoint string) runtimeapi.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// containerPID is the host pid of the pod's (only) running container, from
// containerd's verbose CRI status.
func containerPID(t *testing.T, ctx context.Context, rs runtimeapi.RuntimeServiceClient, p *corev1.Pod) int {
	t.Helper()
	resp, err := rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State:         &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING},
		LabelSelector: map[string]string{"io.kubernetes.pod.uid": string(p.UID)},
	}})
	if err != nil || len(resp.Containers) != 1 {
		t.Fatalf("running containers of pod %s: %v (%v)", p.Name, resp, err)
	}
	s, err := rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: resp.Containers[0].Id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		PID int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(s.Info["info"]), &info); err != nil || info.PID <= 0 {
		t.Fatalf("no pid in the status of pod %s's container: %q (%v)", p.Name, s.Info["info"], err)
	}
	if !processAlive(info.PID) {
		t.Fatalf("pod %s's container pid %d is not running", p.Name, info.PID)
	}
	return info.PID
}

// processAlive: pid runs (a zombie has ended).
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	return err == nil && !strings.Contains(string(b), ") Z ")
}
