package mesossim_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// TestControlAPI drives the fault API over HTTP, as a test in another
// language or a person with curl would.
func TestControlAPI(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:2;mem:512"), hollowAgent(t, "cpus:2;mem:512")}})
	srv := httptest.NewServer(s.ControlHandler())
	defer srv.Close()
	ctx := testCtx(t)
	post := func(path string) int {
		t.Helper()
		resp, err := http.Post(srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cluster := func() map[string]any {
		resp, err := http.Get(srv.URL + "/cluster")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if code := post("/agents/1/partition"); code != 200 {
		t.Fatalf("partition: %d", code)
	}
	if !cluster()["agents"].([]any)[1].(map[string]any)["partitioned"].(bool) {
		t.Error("agent 1 not shown partitioned")
	}
	if code := post("/agents/1/heal"); code != 200 {
		t.Fatalf("heal: %d", code)
	}
	if code := post("/agents/0/kill"); code != 200 {
		t.Fatalf("kill: %d", code)
	}
	if cluster()["agents"].([]any)[0].(map[string]any)["running"].(bool) {
		t.Error("killed agent 0 shown running")
	}
	if code := post("/agents/0/restart"); code != 200 {
		t.Fatalf("restart: %d", code)
	}
	for path, want := range map[string]int{
		"/agents/9/kill":             400,
		"/agents/x/kill":             400,
		"/offers/nope/rescind":       400,
		"/calls/NOT_A_CALL/drop":     400,
		"/calls/KILL/delay":          400,
		"/no/such/thing":             400,
		"/calls/DECLINE/drop":        200,
		"/calls/clear":               200,
		"/calls/REVIVE/drop?count=1": 200,
		"/calls/ACCEPT/lose-answer":  200,
	} {
		if code := post(path); code != want {
			t.Errorf("POST %s: %d, want %d", path, code, want)
		}
	}
	resp, err := http.Get(srv.URL + "/agents/0/kill")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET on a fault path: %d", resp.StatusCode)
	}
	// A rescind through the API reaches the scheduler.
	sched := subscribe(t, ctx, s.MasterURL(), wire.JSON, fwInfo("control"))
	o := nextOffer(t, ctx, sched)
	if code := post("/offers/" + o.ID.Value + "/rescind"); code != 200 {
		t.Fatalf("rescind: %d", code)
	}
	ev, err := sched.Next(ctx, scheduler.Event_RESCIND)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Rescind.OfferID != (mesos.OfferID{Value: o.ID.Value}) {
		t.Errorf("rescinded %v", ev.Rescind.OfferID)
	}
	if code := post("/master/failover"); code != 200 {
		t.Fatalf("failover: %d", code)
	}
}

// TestStandbyAgentJoins: a standby agent is unknown to the master until the
// fault API starts it; then it registers and its resources are offered, as
// a machine joining the cluster.
func TestStandbyAgentJoins(t *testing.T) {
	standby := hollowAgent(t, "cpus:3;mem:512")
	standby.Hostname = "joiner"
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:1;mem:512")}, StandbyAgents: []agent.Config{standby}})
	srv := httptest.NewServer(s.ControlHandler())
	defer srv.Close()
	ctx := testCtx(t)
	b, err := json.Marshal(s.Leader().State())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Slaves []struct {
			Hostname string `json:"hostname"`
		} `json:"slaves"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Slaves) != 1 {
		t.Fatalf("the master knows agents %+v before the standby one starts, want one", st.Slaves)
	}
	if s.Agent(1) != nil {
		t.Fatal("the standby agent runs before it was started")
	}
	sched := subscribe(t, ctx, s.MasterURL(), wire.JSON, fwInfo("standby"))
	nextOffer(t, ctx, sched)

	resp, err := http.Post(srv.URL+"/agents/1/start", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("starting the standby agent: %s", resp.Status)
	}
	for {
		o := nextOffer(t, ctx, sched)
		if o.GetHostname() == "joiner" {
			break
		}
	}
	// Starting it again is an error: it runs.
	resp, err = http.Post(srv.URL+"/agents/1/start", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Errorf("starting a running agent: %s, want 400 Bad Request", resp.Status)
	}
}
