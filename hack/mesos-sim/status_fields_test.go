package mesossim_test

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
)

// TestExecutorUpdateFields: what the agent and master add to an executor's
// update on its way to the scheduler (Mesos 1.11 createStatusUpdate,
// Slave::_statusUpdate, evolve): a timestamp when the executor sent none,
// and the container's status — its id, the executor's pid, the agent's
// address. The master keeps one status per run of equal states
// (Master::updateTask) but forwards every update.
func TestExecutorUpdateFields(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("fields"))
			o := nextOffer(t, ctx, sched)
			task := executorTask("t1", testExecutor("e1"), resources(t, "cpus:1;mem:128"))
			task.Data = []byte("running-twice")
			if err := sched.MustAccept(ctx, launchCall(o, task)); err != nil {
				t.Fatal(err)
			}
			var container string
			for i := 0; i < 2; i++ {
				st, err := sched.Update(ctx, "t1", mesos.TASK_RUNNING)
				if err != nil {
					t.Fatalf("RUNNING update %d: %v", i+1, err)
				}
				if st.Timestamp == nil || st.GetTimestamp() <= 0 {
					t.Errorf("update %d has no timestamp (the executor sent none; the agent sets one)", i+1)
				}
				cs := st.GetContainerStatus()
				if cs.GetContainerID().GetValue() == "" || cs.GetExecutorPID() == 0 || len(cs.GetNetworkInfos()) == 0 ||
					cs.NetworkInfos[0].IPAddresses[0].GetIPAddress() != s.Agent(0).Config().IP {
					t.Errorf("update %d container_status %+v: want the container id, executor pid and the agent's address", i+1, cs)
				}
				container = cs.GetContainerID().GetValue()
				ack(t, ctx, sched, st)
			}
			state := getState(t, ctx, s.MasterURL()+"/master/tasks")
			tasks, _ := state["tasks"].([]any)
			if len(tasks) != 1 {
				t.Fatalf("/master/tasks: %v", state)
			}
			statuses, _ := tasks[0].(map[string]any)["statuses"].([]any)
			running := 0
			for _, x := range statuses {
				st := x.(map[string]any)
				if st["state"] == "TASK_RUNNING" {
					running++
					cs, _ := st["container_status"].(map[string]any)
					id, _ := cs["container_id"].(map[string]any)
					if id["value"] != container {
						t.Errorf("status container_status %v, want container %s", st["container_status"], container)
					}
				}
			}
			if running != 1 {
				t.Errorf("the master kept %d TASK_RUNNING statuses of two equal updates, want 1: %v", running, statuses)
			}
		})
	}
}
