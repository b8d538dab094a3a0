package mesossim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/executor"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

func ack(t *testing.T, ctx context.Context, s *simtest.Scheduler, st *mesos.TaskStatus) {
	t.Helper()
	if err := s.Ack(ctx, st); err != nil {
		t.Fatal(err)
	}
}

// killTask kills task id and returns its TASK_KILLED update, not
// acknowledged.
func killTask(t *testing.T, ctx context.Context, s *simtest.Scheduler, id string) *mesos.TaskStatus {
	t.Helper()
	if err := s.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_KILL, Kill: &scheduler.Call_Kill{TaskID: mesos.TaskID{Value: id}}}); err != nil {
		t.Fatal(err)
	}
	killed, err := s.Update(ctx, id, mesos.TASK_KILLED)
	if err != nil {
		t.Fatal(err)
	}
	return killed
}

// TestRealExecutor runs the test executor as a real child process: its
// environment, LAUNCH, MESSAGE both ways, KILL, and SHUTDOWN.
func TestRealExecutor(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			ac := realAgent(t, "cpus:4;mem:2048")
			if ct == wire.JSON {
				ac.ExecutorEnvironment = map[string]string{"TESTEXECUTOR_JSON": "1"}
			}
			s := startSim(t, mesossim.Config{Agents: []agent.Config{ac}})
			ctx := testCtx(t)
			info := fwInfo("real")
			sched := subscribe(t, ctx, s.MasterURL(), ct, info)
			o := nextOffer(t, ctx, sched)
			exec := testExecutor("exec-1")
			exec.Resources = resources(t, "cpus:0.1;mem:32")
			if err := sched.MustAccept(ctx, launchCall(o, executorTask("t1", exec, resources(t, "cpus:1;mem:128")))); err != nil {
				t.Fatal(err)
			}
			st, err := sched.Update(ctx, "t1", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			ack(t, ctx, sched, st)
			var env map[string]string
			if err := json.Unmarshal(st.Data, &env); err != nil {
				t.Fatalf("status data %q: %v", st.Data, err)
			}
			a := s.Agent(0)
			want := map[string]string{
				"MESOS_AGENT_ENDPOINT":                 a.Endpoint(),
				"MESOS_FRAMEWORK_ID":                   sched.FrameworkID,
				"MESOS_EXECUTOR_ID":                    "exec-1",
				"MESOS_SLAVE_ID":                       a.ID(),
				"MESOS_SLAVE_PID":                      a.PID(),
				"MESOS_CHECKPOINT":                     "0",
				"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "1secs",
				"LIBPROCESS_PORT":                      "0",
			}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("%s = %q, want %q", k, env[k], v)
				}
			}
			if env["MESOS_DIRECTORY"] == "" || env["MESOS_SANDBOX"] != env["MESOS_DIRECTORY"] {
				t.Errorf("MESOS_DIRECTORY=%q MESOS_SANDBOX=%q", env["MESOS_DIRECTORY"], env["MESOS_SANDBOX"])
			}
			if fi, err := os.Stat(env["MESOS_DIRECTORY"]); err != nil || !fi.IsDir() {
				t.Errorf("sandbox %q: %v", env["MESOS_DIRECTORY"], err)
			}
			if _, ok := env["MESOS_RECOVERY_TIMEOUT"]; ok {
				t.Error("MESOS_RECOVERY_TIMEOUT set for a non-checkpointing framework")
			}

			// Framework message to the executor, echoed back.
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_MESSAGE, Message: &scheduler.Call_Message{
				AgentID: o.AgentID, ExecutorID: exec.ExecutorID, Data: []byte("ping")}}); err != nil {
				t.Fatal(err)
			}
			msg, err := sched.Next(ctx, scheduler.Event_MESSAGE)
			if err != nil {
				t.Fatal(err)
			}
			if string(msg.Message.Data) != "echo:ping" || msg.Message.ExecutorID.Value != "exec-1" {
				t.Errorf("MESSAGE %q from %v", msg.Message.Data, msg.Message.ExecutorID)
			}

			// A second task goes to the same, already running executor.
			o2 := nextOffer(t, ctx, sched)
			found := false
			for _, id := range o2.ExecutorIDs {
				found = found || id.Value == "exec-1"
			}
			if !found {
				t.Errorf("offer executor_ids %v lack exec-1", o2.ExecutorIDs)
			}
			if err := sched.MustAccept(ctx, launchCall(o2, executorTask("t2", exec, resources(t, "cpus:1;mem:128")))); err != nil {
				t.Fatal(err)
			}
			st2, err := sched.Update(ctx, "t2", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			ack(t, ctx, sched, st2)

			killed := killTask(t, ctx, sched, "t1")
			if killed.GetSource() != mesos.SOURCE_EXECUTOR {
				t.Errorf("KILLED source %v", killed.GetSource())
			}
			ack(t, ctx, sched, killed)

			// SHUTDOWN: the executor kills its tasks and exits; FAILURE names it.
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_SHUTDOWN, Shutdown: &scheduler.Call_Shutdown{
				AgentID: o.AgentID, ExecutorID: exec.ExecutorID}}); err != nil {
				t.Fatal(err)
			}
			k2, err := sched.Update(ctx, "t2", mesos.TASK_KILLED)
			if err != nil {
				t.Fatal(err)
			}
			ack(t, ctx, sched, k2)
			f, err := sched.Next(ctx, scheduler.Event_FAILURE)
			if err != nil {
				t.Fatal(err)
			}
			if f.Failure.ExecutorID.GetValue() != "exec-1" || f.Failure.Status == nil {
				t.Errorf("FAILURE %v", f.Failure)
			}
		})
	}
}

// TestExecutorShutdownGrace: an executor ignoring SHUTDOWN is killed after its grace period.
func TestExecutorShutdownGrace(t *testing.T) {
	ac := realAgent(t, "cpus:4;mem:2048")
	ac.ExecutorEnvironment = map[string]string{"TESTEXECUTOR_IGNORE_SHUTDOWN": "1"}
	s := startSim(t, mesossim.Config{Agents: []agent.Config{ac}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), wire.Protobuf, fwInfo("grace"))
	o := nextOffer(t, ctx, sched)
	exec := testExecutor("stubborn")
	if err := sched.MustAccept(ctx, launchCall(o, executorTask("t", exec, resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	st, err := sched.Update(ctx, "t", mesos.TASK_RUNNING)
	if err != nil {
		t.Fatal(err)
	}
	ack(t, ctx, sched, st)
	if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_SHUTDOWN, Shutdown: &scheduler.Call_Shutdown{AgentID: o.AgentID, ExecutorID: exec.ExecutorID}}); err != nil {
		t.Fatal(err)
	}
	// The agent kills it; the task the executor left behind is reported
	// failed by the agent, as the real agent does, and the exit status is a SIGKILL.
	failed, err := sched.Update(ctx, "t", mesos.TASK_FAILED)
	if err != nil {
		t.Fatal(err)
	}
	if failed.GetSource() != mesos.SOURCE_AGENT || failed.GetReason() != mesos.REASON_EXECUTOR_TERMINATED {
		t.Errorf("update %v", failed)
	}
	f, err := sched.Next(ctx, scheduler.Event_FAILURE)
	if err != nil {
		t.Fatal(err)
	}
	if f.Failure.GetStatus() != 9 {
		t.Errorf("executor exit status %d, want SIGKILL (9)", f.Failure.GetStatus())
	}
}

// TestLaunchGroup sends a task group to one executor.
func TestLaunchGroup(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("group"))
			o := nextOffer(t, ctx, sched)
			exec := testExecutor("pod-1")
			exec.Type = mesos.ExecutorInfo_CUSTOM
			exec.Resources = resources(t, "cpus:0.1;mem:32")
			tasks := []mesos.TaskInfo{
				{Name: "a", TaskID: mesos.TaskID{Value: "a"}, AgentID: o.AgentID, Resources: resources(t, "cpus:0.5;mem:64")},
				{Name: "b", TaskID: mesos.TaskID{Value: "b"}, AgentID: o.AgentID, Resources: resources(t, "cpus:0.5;mem:64")},
			}
			call := &scheduler.Call{Type: scheduler.Call_ACCEPT, Accept: &scheduler.Call_Accept{
				OfferIDs: []mesos.OfferID{o.ID},
				Operations: []mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH_GROUP, LaunchGroup: &mesos.Offer_Operation_LaunchGroup{
					Executor: exec, TaskGroup: mesos.TaskGroupInfo{Tasks: tasks}}}},
			}}
			if err := sched.MustAccept(ctx, call); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"a", "b"} {
				st, err := sched.Update(ctx, id, mesos.TASK_RUNNING)
				if err != nil {
					t.Fatal(err)
				}
				ack(t, ctx, sched, st)
			}
			st := getState(t, ctx, "http://"+s.Agent(0).Endpoint()+"/state")
			execs := st["frameworks"].([]any)[0].(map[string]any)["executors"].([]any)
			if len(execs) != 1 || len(execs[0].(map[string]any)["tasks"].([]any)) != 2 {
				t.Errorf("agent state executors = %v", execs)
			}
		})
	}
}

// TestCommandTask runs a command task through the agent's command executor.
func TestCommandTask(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("cmd"))
			o := nextOffer(t, ctx, sched)
			if err := sched.MustAccept(ctx, launchCall(o,
				commandTask("ok", "exit 0", resources(t, "cpus:0.5;mem:32")),
				commandTask("bad", "exit 3", resources(t, "cpus:0.5;mem:32")),
				commandTask("long", "sleep 100", resources(t, "cpus:0.5;mem:32")),
			)); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				id    string
				state mesos.TaskState
			}{{"ok", mesos.TASK_STARTING}, {"ok", mesos.TASK_RUNNING}, {"ok", mesos.TASK_FINISHED},
				{"bad", mesos.TASK_STARTING}, {"bad", mesos.TASK_RUNNING}, {"bad", mesos.TASK_FAILED},
				{"long", mesos.TASK_STARTING}, {"long", mesos.TASK_RUNNING}} {
				st, err := sched.Update(ctx, c.id, c.state)
				if err != nil {
					t.Fatal(err)
				}
				ack(t, ctx, sched, st)
				if c.state == mesos.TASK_FAILED && !strings.Contains(st.GetMessage(), "status 3") {
					t.Errorf("failed command message %q", st.GetMessage())
				}
			}
			killTask(t, ctx, sched, "long")
		})
	}
}

// TestExecutorAPIStatusCodes checks the agent's /api/v1/executor rejections.
func TestExecutorAPIStatusCodes(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:1;mem:128")}})
	url := "http://" + s.Agent(0).Endpoint() + "/api/v1/executor"
	ctx := testCtx(t)
	do := func(method string, hdr map[string]string, body []byte) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, ct := range encodings {
		sub := &executor.Call{Type: executor.Call_SUBSCRIBE, FrameworkID: mesos.FrameworkID{Value: "f"}, ExecutorID: mesos.ExecutorID{Value: "e"},
			Subscribe: &executor.Call_Subscribe{}}
		b, _ := wire.Encode(ct, sub)
		if code, _ := do(http.MethodGet, nil, nil); code != 405 {
			t.Errorf("GET: %d", code)
		}
		if code, _ := do(http.MethodPost, nil, b); code != 400 {
			t.Errorf("no content type: %d", code)
		}
		if code, _ := do(http.MethodPost, map[string]string{"Content-Type": "text/plain"}, b); code != 415 {
			t.Errorf("text/plain: %d", code)
		}
		if code, _ := do(http.MethodPost, map[string]string{"Content-Type": ct, "Accept": "text/html"}, b); code != 406 {
			t.Errorf("accept html: %d", code)
		}
		if code, msg := do(http.MethodPost, map[string]string{"Content-Type": ct}, b); code != 400 || !strings.Contains(msg, "Framework cannot be found") {
			t.Errorf("unknown framework: %d %q", code, msg)
		}
		upd := &executor.Call{Type: executor.Call_UPDATE, FrameworkID: mesos.FrameworkID{Value: "f"}, ExecutorID: mesos.ExecutorID{Value: "e"},
			Update: &executor.Call_Update{Status: mesos.TaskStatus{TaskID: mesos.TaskID{Value: "t"}, State: mesos.TASK_RUNNING.Enum(), Source: mesos.SOURCE_EXECUTOR.Enum()}}}
		b, _ = wire.Encode(ct, upd)
		if code, msg := do(http.MethodPost, map[string]string{"Content-Type": ct}, b); code != 400 || !strings.Contains(msg, "uuid") {
			t.Errorf("update without uuid: %d %q", code, msg)
		}
	}
}
