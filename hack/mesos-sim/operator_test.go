package mesossim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	agentapi "github.com/mesos/mesos-go/api/v1/lib/agent"
	operator "github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// postAPI posts call to url's /api/v1 in ct and decodes a 200 answer into
// out; it returns the status and, on failure, the body.
func postAPI(t *testing.T, ctx context.Context, base, ct string, call, out wire.Message) (int, string) {
	t.Helper()
	body, err := wire.Encode(ct, call)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(b) == 0 {
		return resp.StatusCode, string(b)
	}
	if got := resp.Header.Get("Content-Type"); got != ct {
		t.Fatalf("%v answered in %q, asked for %q", call, got, ct)
	}
	if err := wire.Decode(ct, b, out); err != nil {
		t.Fatalf("decoding the answer to %v: %v", call, err)
	}
	return resp.StatusCode, ""
}

// operatorCall posts call to the master's v1 operator API.
func operatorCall(t *testing.T, ctx context.Context, base, ct string, call *operator.Call) (int, *operator.Response, string) {
	t.Helper()
	var out operator.Response
	code, msg := postAPI(t, ctx, base, ct, call, &out)
	if code != http.StatusOK {
		return code, nil, msg
	}
	return code, &out, ""
}

// runningTask subscribes a framework and runs one task on a hollow agent.
func runningTask(t *testing.T, ctx context.Context, s *mesossim.Sim, ct string) string {
	t.Helper()
	sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("ops"))
	o := nextOffer(t, ctx, sched)
	if err := sched.MustAccept(ctx, launchCall(o, commandTask("t1", "sleep 1000", resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	// A real agent's command executor reports STARTING first.
	for {
		ev, err := sched.Wait(ctx, func(ev *scheduler.Event) bool {
			return ev.Type == scheduler.Event_UPDATE && ev.Update.Status.TaskID.Value == "t1"
		})
		if err != nil {
			t.Fatal(err)
		}
		st := ev.Update.Status
		ack(t, ctx, sched, &st)
		if st.GetState() == mesos.TASK_RUNNING {
			return sched.FrameworkID
		}
	}
}

// TestOperatorAPI: the master's v1 operator API (master.proto, Master::Http
// ::api) answers GET_* calls in the request's encoding, refuses what it
// does not play with 501, and SUBSCRIBE streams SUBSCRIBED with the state,
// then TASK_ADDED and TASK_UPDATED, as RecordIO.
func TestOperatorAPI(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			base := s.MasterURL()

			// SUBSCRIBE before the task, to see it arrive.
			sub, _ := wire.Encode(ct, &operator.Call{Type: operator.Call_SUBSCRIBE})
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/v1", bytes.NewReader(sub))
			req.Header.Set("Content-Type", ct)
			req.Header.Set("Accept", ct)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ct {
				t.Fatalf("SUBSCRIBE: %s %q", resp.Status, resp.Header.Get("Content-Type"))
			}
			events := wire.NewReader(resp.Body, 1<<20)
			next := func() *operator.Event {
				t.Helper()
				rec, err := events.ReadRecord()
				if err != nil {
					t.Fatalf("reading the event stream: %v", err)
				}
				var ev operator.Event
				if err := wire.Decode(ct, rec, &ev); err != nil {
					t.Fatal(err)
				}
				return &ev
			}
			first := next()
			if first.Type != operator.Event_SUBSCRIBED || len(first.GetSubscribed().GetGetState().GetGetAgents().GetAgents()) != 1 {
				t.Fatalf("first event %v, want SUBSCRIBED with the state (one agent)", first)
			}

			fwID := runningTask(t, ctx, s, ct)
			var added, running bool
			for !added || !running {
				ev := next()
				switch ev.Type {
				case operator.Event_TASK_ADDED:
					added = ev.TaskAdded.Task.TaskID.Value == "t1"
				case operator.Event_TASK_UPDATED:
					running = running || ev.TaskUpdated.Status.TaskID.Value == "t1" && ev.TaskUpdated.GetState() == mesos.TASK_RUNNING
				}
			}

			code, r, msg := operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_VERSION})
			if code != 200 || r.GetGetVersion().VersionInfo.Version != "1.11.0" {
				t.Errorf("GET_VERSION: %d %v %s", code, r, msg)
			}
			code, r, msg = operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_HEALTH})
			if code != 200 || !r.GetGetHealth().Healthy {
				t.Errorf("GET_HEALTH: %d %v %s", code, r, msg)
			}
			code, r, msg = operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_STATE})
			st := r.GetGetState()
			if code != 200 || len(st.GetGetTasks().Tasks) != 1 || st.GetTasks.Tasks[0].GetState() != mesos.TASK_RUNNING ||
				len(st.GetGetAgents().Agents) != 1 || len(st.GetGetFrameworks().Frameworks) != 1 ||
				st.GetFrameworks.Frameworks[0].FrameworkInfo.GetID().GetValue() != fwID {
				t.Errorf("GET_STATE: %d %v %s", code, r, msg)
			}
			code, r, _ = operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_AGENTS})
			if code != 200 || len(r.GetGetAgents().Agents) != 1 || !r.GetAgents.Agents[0].Active || r.GetAgents.Agents[0].Version != "1.11.0" {
				t.Errorf("GET_AGENTS: %d %v", code, r)
			}
			code, r, _ = operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_FRAMEWORKS})
			if code != 200 || len(r.GetGetFrameworks().Frameworks) != 1 || !r.GetFrameworks.Frameworks[0].Connected {
				t.Errorf("GET_FRAMEWORKS: %d %v", code, r)
			}
			code, r, _ = operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_TASKS})
			if code != 200 || len(r.GetGetTasks().Tasks) != 1 {
				t.Errorf("GET_TASKS: %d %v", code, r)
			}
			code, r, _ = operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_MASTER})
			if code != 200 || r.GetGetMaster().GetMasterInfo().GetVersion() != "1.11.0" {
				t.Errorf("GET_MASTER: %d %v", code, r)
			}
			code, r, _ = operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_FLAGS})
			if code != 200 || len(r.GetGetFlags().Flags) == 0 {
				t.Errorf("GET_FLAGS: %d %v", code, r)
			}
			if code, _, msg := operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_GET_QUOTA}); code != http.StatusNotImplemented {
				t.Errorf("GET_QUOTA: %d %s, want 501", code, msg)
			}
			if code, _, msg := operatorCall(t, ctx, base, ct, &operator.Call{Type: operator.Call_TEARDOWN}); code != http.StatusBadRequest || !strings.Contains(msg, "teardown") {
				t.Errorf("TEARDOWN without teardown: %d %q, want 400", code, msg)
			}
			// The master path answers too.
			get, _ := http.Get(base + "/master/api/v1")
			if get != nil {
				get.Body.Close()
				if get.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("GET /master/api/v1: %s, want 405", get.Status)
				}
			}
		})
	}
}

func getJSON(t *testing.T, ctx context.Context, u string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestMasterEndpoints: libprocess routing (top-level paths reach the
// master, trailing slashes are ignored), /version, /metrics/snapshot,
// /master/state-summary, /flags, /master/roles, /master/tasks' filters and
// pagination, /master/teardown, and the state fields Mesos 1.11 writes.
func TestMasterEndpoints(t *testing.T) {
	res := "cpus(k8s):1;mem(k8s):256;cpus:3;mem:1792"
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, res)}})
	ctx := testCtx(t)
	base := s.MasterURL()
	fwID := runningTask(t, ctx, s, wire.JSON)

	for path, key := range map[string]string{
		"/slaves": "slaves", "/tasks": "tasks", "/frameworks": "frameworks", "/state/": "slaves", "/master/state/": "slaves",
		"/master/tasks/": "tasks", "/state-summary": "slaves", "/master/state-summary": "frameworks", "/flags": "flags",
		"/master/flags": "flags", "/master/roles": "roles", "/roles": "roles", "/version": "version", "/version/": "version",
		"/metrics/snapshot": "master/tasks_running",
	} {
		code, body := getJSON(t, ctx, base+path)
		if code != 200 || body[key] == nil {
			t.Errorf("GET %s: %d, %q missing in %v", path, code, key, body)
		}
	}
	if _, m := getJSON(t, ctx, base+"/metrics/snapshot"); m["master/tasks_running"] != 1.0 || m["master/slaves_active"] != 1.0 {
		t.Errorf("/metrics/snapshot: tasks_running %v slaves_active %v, want 1 and 1", m["master/tasks_running"], m["master/slaves_active"])
	}

	_, st := getJSON(t, ctx, base+"/master/state")
	for _, k := range []string{"git_sha", "build_date", "build_time", "build_user", "unreachable_slaves"} {
		if _, ok := st[k]; !ok {
			t.Errorf("/master/state has no %s", k)
		}
	}
	agent0 := st["slaves"].([]any)[0].(map[string]any)
	reserved, _ := agent0["reserved_resources"].(map[string]any)
	if k8s, _ := reserved["k8s"].(map[string]any); k8s["cpus"] != 1.0 {
		t.Errorf("agent reserved_resources %v, want cpus 1 reserved to k8s", agent0["reserved_resources"])
	}
	if caps, _ := agent0["capabilities"].([]any); len(caps) == 0 {
		t.Errorf("agent capabilities %v", agent0["capabilities"])
	}
	fw := st["frameworks"].([]any)[0].(map[string]any)
	if r, _ := fw["resources"].(map[string]any); r["cpus"] == nil || r["cpus"].(float64) < 1 {
		t.Errorf("framework resources %v, want at least the task's cpus", fw["resources"])
	}
	task := fw["tasks"].([]any)[0].(map[string]any)
	if task["role"] != "*" {
		t.Errorf("task role %v, want *", task["role"])
	}

	// Filters and pagination of /master/tasks.
	for q, want := range map[string]int{
		"": 1, "?framework_id=" + fwID: 1, "?framework_id=other": 0, "?task_id=t1": 1, "?task_id=t2": 0,
		"?limit=0": 0, "?offset=1": 0, "?order=asc&limit=1": 1,
	} {
		_, body := getJSON(t, ctx, base+"/master/tasks"+q)
		if tasks, _ := body["tasks"].([]any); len(tasks) != want {
			t.Errorf("/master/tasks%s: %d tasks, want %d", q, len(tasks), want)
		}
	}

	// Teardown: POST only, frameworkId required and known.
	post := func(body string) int {
		resp, err := http.Post(base+"/master/teardown", "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(""); code != 400 {
		t.Errorf("teardown without frameworkId: %d, want 400", code)
	}
	if code := post("frameworkId=nope"); code != 400 {
		t.Errorf("teardown of an unknown framework: %d, want 400", code)
	}
	if code := post(url.Values{"frameworkId": {fwID}}.Encode()); code != 200 {
		t.Errorf("teardown: %d, want 200", code)
	}
	_, st = getJSON(t, ctx, base+"/master/frameworks")
	if fws, _ := st["completed_frameworks"].([]any); len(fws) != 1 {
		t.Errorf("after teardown, completed_frameworks %v", st["completed_frameworks"])
	}
}

// TestAgentOperatorAPI: the agent's v1 operator API (agent.proto,
// Slave::Http::api) answers the read calls: the agent, its frameworks,
// executors, tasks and containers.
func TestAgentOperatorAPI(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			fwID := runningTask(t, ctx, s, ct)
			base := "http://" + s.Agent(0).Endpoint()
			call := func(typ agentapi.Call_Type) *agentapi.Response {
				t.Helper()
				var out agentapi.Response
				if code, msg := postAPI(t, ctx, base, ct, &agentapi.Call{Type: typ}, &out); code != http.StatusOK {
					t.Fatalf("%s: %d %s", typ, code, msg)
				}
				return &out
			}
			if r := call(agentapi.Call_GET_VERSION); r.GetGetVersion().VersionInfo.Version != "1.11.0" {
				t.Errorf("GET_VERSION %v", r)
			}
			if r := call(agentapi.Call_GET_AGENT); r.GetGetAgent().GetAgentInfo().GetID().GetValue() != s.Agent(0).ID() {
				t.Errorf("GET_AGENT %v", r)
			}
			st := call(agentapi.Call_GET_STATE).GetGetState()
			if len(st.GetGetTasks().LaunchedTasks) != 1 || st.GetTasks.LaunchedTasks[0].GetState() != mesos.TASK_RUNNING ||
				len(st.GetGetExecutors().Executors) != 1 || len(st.GetGetFrameworks().Frameworks) != 1 ||
				st.GetFrameworks.Frameworks[0].FrameworkInfo.GetID().GetValue() != fwID {
				t.Errorf("GET_STATE %v", st)
			}
			cs := call(agentapi.Call_GET_CONTAINERS).GetGetContainers().Containers
			if len(cs) != 1 || cs[0].ContainerID.Value == "" || cs[0].GetContainerStatus().GetExecutorPID() == 0 {
				t.Errorf("GET_CONTAINERS %v", cs)
			}
			if r := call(agentapi.Call_GET_TASKS); len(r.GetGetTasks().LaunchedTasks) != 1 {
				t.Errorf("GET_TASKS %v", r)
			}
		})
	}
}
