package mesossim_test

import (
	"context"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
)

func launchDefaultGroup(t *testing.T, ctx context.Context, sched *simtest.Scheduler, o mesos.Offer, execID string, cmds map[string]string) {
	t.Helper()
	exec := mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: execID}, Type: mesos.ExecutorInfo_DEFAULT,
		FrameworkID: &mesos.FrameworkID{Value: sched.FrameworkID}, Resources: resources(t, "cpus:0.1;mem:32")}
	var tasks []mesos.TaskInfo
	for id, cmd := range cmds {
		c := cmd
		tasks = append(tasks, mesos.TaskInfo{Name: id, TaskID: mesos.TaskID{Value: id}, AgentID: o.AgentID,
			Resources: resources(t, "cpus:0.2;mem:32"), Command: &mesos.CommandInfo{Value: &c}})
	}
	call := &scheduler.Call{Type: scheduler.Call_ACCEPT, Accept: &scheduler.Call_Accept{
		OfferIDs: []mesos.OfferID{o.ID},
		Operations: []mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH_GROUP, LaunchGroup: &mesos.Offer_Operation_LaunchGroup{
			Executor: exec, TaskGroup: mesos.TaskGroupInfo{Tasks: tasks}}}},
	}}
	if err := sched.MustAccept(ctx, call); err != nil {
		t.Fatal(err)
	}
}

// TestDefaultExecutor: LAUNCH_GROUP with an ExecutorInfo of type DEFAULT
// and no command runs the group's commands as Mesos 1.11's default executor
// does (default_executor.cpp): STARTING then RUNNING per task, FINISHED on
// exit 0; a task that fails ("Command exited with status 3") kills the rest
// of its group (TASK_KILLED).
func TestDefaultExecutor(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("default"))
			o := nextOffer(t, ctx, sched)
			launchDefaultGroup(t, ctx, sched, o, "group-ok", map[string]string{"ok": "true"})
			for _, state := range []mesos.TaskState{mesos.TASK_STARTING, mesos.TASK_RUNNING, mesos.TASK_FINISHED} {
				st, err := sched.Update(ctx, "ok", state)
				if err != nil {
					t.Fatal(err)
				}
				if st.GetSource() != mesos.SOURCE_EXECUTOR {
					t.Errorf("%s from %s, want SOURCE_EXECUTOR", state, st.GetSource())
				}
				ack(t, ctx, sched, st)
			}

			o = nextOffer(t, ctx, sched)
			launchDefaultGroup(t, ctx, sched, o, "group-bad", map[string]string{"long": "sleep 1000", "bad": "sleep 0.5; exit 3"})
			for _, id := range []string{"long", "bad"} {
				for _, state := range []mesos.TaskState{mesos.TASK_STARTING, mesos.TASK_RUNNING} {
					st, err := sched.Update(ctx, id, state)
					if err != nil {
						t.Fatal(err)
					}
					ack(t, ctx, sched, st)
				}
			}
			st, err := sched.Update(ctx, "bad", mesos.TASK_FAILED)
			if err != nil {
				t.Fatal(err)
			}
			if st.GetMessage() != "Command exited with status 3" {
				t.Errorf("failed task message %q", st.GetMessage())
			}
			ack(t, ctx, sched, st)
			st, err = sched.Update(ctx, "long", mesos.TASK_KILLED)
			if err != nil {
				t.Fatalf("the failed task's group was not killed: %v", err)
			}
			ack(t, ctx, sched, st)
		})
	}
}
