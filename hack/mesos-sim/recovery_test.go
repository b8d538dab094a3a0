package mesossim_test

import (
	"encoding/json"
	"maps"
	"syscall"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// TestAgentRestartRecovery: with checkpointing, an executor outlives an
// agent crash, re-subscribes to the restarted agent, and the status update
// that was not yet acknowledged is delivered again with the same uuid.
func TestAgentRestartRecovery(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			mc := fastMaster()
			// Long enough that the master does not give up on the agent while it restarts.
			mc.AgentPingTimeout = 5 * time.Second
			ac := realAgent(t, "cpus:4;mem:2048")
			if ct == wire.JSON {
				// The executor speaks JSON to the agent too.
				ac.ExecutorEnvironment = map[string]string{"TESTEXECUTOR_JSON": "1"}
			}
			s := startSim(t, mesossim.Config{Master: mc, Agents: []agent.Config{ac}})
			ctx := testCtx(t)
			info := fwInfo("recover")
			checkpoint := true
			info.Checkpoint = &checkpoint
			sched := subscribe(t, ctx, s.MasterURL(), ct, info)
			o := nextOffer(t, ctx, sched)
			exec := testExecutor("survivor")
			if err := sched.MustAccept(ctx, launchCall(o, executorTask("t", exec, resources(t, "cpus:1;mem:64")))); err != nil {
				t.Fatal(err)
			}
			running, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			var env map[string]string
			if err := json.Unmarshal(running.Data, &env); err != nil {
				t.Fatal(err)
			}
			if env["MESOS_CHECKPOINT"] != "1" || env["MESOS_RECOVERY_TIMEOUT"] != "30secs" || env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] != "5secs" {
				t.Errorf("checkpoint env: %v", env)
			}
			pidBefore := agentExecutorPID(t, s)

			if err := s.KillAgent(0); err != nil {
				t.Fatal(err)
			}
			if err := s.RestartAgent(0); err != nil {
				t.Fatal(err)
			}
			again, err := sched.Wait(ctx, func(e *scheduler.Event) bool {
				return e.Type == scheduler.Event_UPDATE && string(e.Update.Status.UUID) == string(running.UUID)
			})
			if err != nil {
				t.Fatal(err)
			}
			ack(t, ctx, sched, &again.Update.Status)
			eventually(t, ctx, "executor to re-subscribe", func() bool {
				st := getState(t, ctx, "http://"+s.Agent(0).Endpoint()+"/state")
				fws := st["frameworks"].([]any)
				if len(fws) != 1 {
					return false
				}
				execs := fws[0].(map[string]any)["executors"].([]any)
				return len(execs) == 1 && execs[0].(map[string]any)["state"] == "RUNNING"
			})
			if pid := agentExecutorPID(t, s); pid != pidBefore {
				t.Errorf("executor pid changed from %v to %v: it was relaunched, not recovered", pidBefore, pid)
			}
			killed := killTask(t, ctx, sched, "t")
			ack(t, ctx, sched, killed)
		})
	}
}

func agentExecutorPID(t *testing.T, s *mesossim.Sim) float64 {
	t.Helper()
	ctx := testCtx(t)
	st := getState(t, ctx, "http://"+s.Agent(0).Endpoint()+"/state")
	execs := st["frameworks"].([]any)[0].(map[string]any)["executors"].([]any)
	return execs[0].(map[string]any)["pid"].(float64)
}

// TestRecoveryWithoutCheckpoint: an executor of a non-checkpointing framework
// does not survive the agent; its task is failed after the restart.
func TestRecoveryWithoutCheckpoint(t *testing.T) {
	mc := fastMaster()
	mc.AgentPingTimeout = 5 * time.Second
	s := startSim(t, mesossim.Config{Master: mc, Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), wire.JSON, fwInfo("no-checkpoint"))
	o := nextOffer(t, ctx, sched)
	if err := sched.MustAccept(ctx, launchCall(o, executorTask("t", testExecutor("gone"), resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	running, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
	if err != nil {
		t.Fatal(err)
	}
	ack(t, ctx, sched, running)
	pid := int(agentExecutorPID(t, s))
	if err := s.RestartAgent(0); err != nil {
		t.Fatal(err)
	}
	// The orphaned executor is killed.
	eventually(t, ctx, "orphaned executor to die", func() bool { return syscall.Kill(pid, 0) != nil })
	// The re-registered agent does not report the task: the master tells the framework.
	st, err := sched.Update(ctx, "t", mesos.TASK_LOST)
	if err != nil {
		t.Fatal(err)
	}
	// The agent answers the master's reconciliation, so the update carries a uuid.
	if st.GetSource() != mesos.SOURCE_AGENT || st.GetReason() != mesos.REASON_RECONCILIATION || len(st.UUID) == 0 {
		t.Errorf("update %v", st)
	}
	ack(t, ctx, sched, st)
}

// TestTaskQueuedThroughAnAgentRestartIsDropped: a task queued for an
// executor that is still starting when the agent dies is in the agent's
// checkpoint as STAGING, but the queue is not. When the recovered executor
// subscribes without the task, the agent reports it TASK_DROPPED ("Task
// launched during agent restart"), as Mesos' Slave::reregisterExecutor does,
// so the framework can launch it again instead of waiting on a STAGING task
// that will never start.
func TestTaskQueuedThroughAnAgentRestartIsDropped(t *testing.T) {
	mc := fastMaster()
	mc.AgentPingTimeout = 5 * time.Second
	ac := realAgent(t, "cpus:4;mem:2048")
	ac.ExecutorEnvironment = map[string]string{"TESTEXECUTOR_SUBSCRIBE_DELAY": "3s"}
	s := startSim(t, mesossim.Config{Master: mc, Agents: []agent.Config{ac}})
	ctx := testCtx(t)
	info := fwInfo("queued", mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	checkpoint := true
	info.Checkpoint = &checkpoint
	sched := subscribe(t, ctx, s.MasterURL(), wire.JSON, info)
	o := nextOffer(t, ctx, sched)
	if err := sched.MustAccept(ctx, launchCall(o, executorTask("t", testExecutor("slow"), resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	// Started: its process runs (a pid), it has not subscribed. Killed
	// before the fork (still fetching), the agent would fail the task
	// instead, as the real one destroys a container it was launching.
	eventually(t, ctx, "the task queued for the started executor", func() bool {
		st := getState(t, ctx, "http://"+s.Agent(0).Endpoint()+"/state")
		for _, fw := range st["frameworks"].([]any) {
			for _, e := range fw.(map[string]any)["executors"].([]any) {
				e := e.(map[string]any)
				if q, _ := e["queued_tasks"].([]any); len(q) == 1 && e["pid"] != nil && e["pid"] != 0.0 {
					return true
				}
			}
		}
		return false
	})
	if err := s.KillAgent(0); err != nil {
		t.Fatal(err)
	}
	if err := s.RestartAgent(0); err != nil {
		t.Fatal(err)
	}
	dropped, err := sched.Update(ctx, "t", mesos.TASK_DROPPED)
	if err != nil {
		t.Fatalf("the task queued through the restart: %v (it stays TASK_STAGING)", err)
	}
	if dropped.GetReason() != mesos.REASON_AGENT_RESTARTED || dropped.GetSource() != mesos.SOURCE_AGENT {
		t.Errorf("update %v, want reason %v from the agent", dropped, mesos.REASON_AGENT_RESTARTED)
	}
	ack(t, ctx, sched, dropped)
}

// TestHollowAgentRestartRecovery: a hollow agent's checkpoint of a
// checkpointing framework's tasks brings back, after the agent restarts,
// each task it had not finished with its latest state, the update not yet
// acknowledged (resent with the same uuid), and nothing of a task whose
// terminal update was acknowledged.
func TestHollowAgentRestartRecovery(t *testing.T) {
	mc := fastMaster()
	mc.AgentPingTimeout = 5 * time.Second
	s := startSim(t, mesossim.Config{Master: mc, Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	info := fwInfo("hollow-recover", mesos.FrameworkInfo_Capability_PARTITION_AWARE)
	checkpoint := true
	info.Checkpoint = &checkpoint
	sched := subscribe(t, ctx, s.MasterURL(), wire.Protobuf, info)
	o := nextOffer(t, ctx, sched)
	exec := testExecutor("shared")
	res := resources(t, "cpus:1;mem:64")
	if err := sched.MustAccept(ctx, launchCall(o, executorTask("acked", exec, res), executorTask("unacked", exec, res), executorTask("done", exec, res))); err != nil {
		t.Fatal(err)
	}
	running := map[string]*mesos.TaskStatus{}
	for _, id := range []string{"acked", "unacked", "done"} {
		st, err := sched.Update(ctx, id, mesos.TASK_RUNNING)
		if err != nil {
			t.Fatal(err)
		}
		running[id] = st
	}
	ack(t, ctx, sched, running["acked"])
	ack(t, ctx, sched, running["done"])
	killed := killTask(t, ctx, sched, "done")
	ack(t, ctx, sched, killed)
	eventually(t, ctx, "the agent to forget the finished task", func() bool {
		return len(agentTasks(t, s)) == 2
	})

	if err := s.KillAgent(0); err != nil {
		t.Fatal(err)
	}
	if err := s.RestartAgent(0); err != nil {
		t.Fatal(err)
	}
	again, err := sched.Wait(ctx, func(e *scheduler.Event) bool {
		return e.Type == scheduler.Event_UPDATE && string(e.Update.Status.UUID) == string(running["unacked"].UUID)
	})
	if err != nil {
		t.Fatalf("the unacknowledged update after the restart: %v", err)
	}
	if again.Update.Status.TaskID.Value != "unacked" || again.Update.Status.GetState() != mesos.TASK_RUNNING {
		t.Errorf("resent update %v", again.Update.Status)
	}
	ack(t, ctx, sched, &again.Update.Status)
	if got, want := agentTasks(t, s), map[string]string{"acked": "TASK_RUNNING", "unacked": "TASK_RUNNING"}; !maps.Equal(got, want) {
		t.Errorf("the restarted agent's tasks: %v, want %v", got, want)
	}
	for _, ev := range sched.Events() {
		if ev.Type == scheduler.Event_UPDATE && ev.Update.Status.TaskID.Value == "done" && ev.Update.Status.GetState() != mesos.TASK_RUNNING && ev.Update.Status.GetState() != mesos.TASK_KILLED {
			t.Errorf("the finished task came back after the restart: %v", ev.Update.Status)
		}
	}
}

// agentTasks is the agent's /state: each task's state by task id.
func agentTasks(t *testing.T, s *mesossim.Sim) map[string]string {
	t.Helper()
	st := getState(t, testCtx(t), "http://"+s.Agent(0).Endpoint()+"/state")
	out := map[string]string{}
	for _, fw := range st["frameworks"].([]any) {
		for _, e := range fw.(map[string]any)["executors"].([]any) {
			for _, task := range e.(map[string]any)["tasks"].([]any) {
				task := task.(map[string]any)
				out[task["id"].(string)] = task["state"].(string)
			}
		}
	}
	return out
}
