package mesossim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

var encodings = []string{wire.JSON, wire.Protobuf}

var testExecutorBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mesos-sim-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testExecutorBin = filepath.Join(dir, "testexecutor")
	cmd := exec.Command("go", "build", "-o", testExecutorBin, "./internal/testexecutor")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building testexecutor:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// fastMaster keeps timings short so tests run quickly; the rules are the same.
func fastMaster() master.Config {
	return master.Config{
		HeartbeatInterval:  300 * time.Millisecond,
		AllocationInterval: 50 * time.Millisecond,
		AgentPingTimeout:   100 * time.Millisecond,
	}
}

func resources(t *testing.T, spec string) []mesos.Resource {
	t.Helper()
	rs, err := mesossim.ParseResources(spec)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func hollowAgent(t *testing.T, spec string) agent.Config {
	return agent.Config{Resources: resources(t, spec), Hollow: true, StatusUpdateRetryInterval: 200 * time.Millisecond}
}

func realAgent(t *testing.T, spec string) agent.Config {
	return agent.Config{
		Resources:                     resources(t, spec),
		StatusUpdateRetryInterval:     200 * time.Millisecond,
		ExecutorShutdownGracePeriod:   time.Second,
		ExecutorReregistrationTimeout: 5 * time.Second,
		RecoveryTimeout:               30 * time.Second,
		ExecutorEnvironment:           map[string]string{"TESTEXECUTOR_JSON": "0"},
	}
}

func startSim(t *testing.T, cfg mesossim.Config) *mesossim.Sim {
	t.Helper()
	if cfg.Master.HeartbeatInterval == 0 {
		cfg.Master = fastMaster()
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := mesossim.Start(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); cancel() })
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// scaleCtx bounds a test whose work grows with its agents by the test
// binary's own deadline rather than a fixed time: under -race on two busy
// cores 200 agents' launches and acknowledgements took longer than 30 s,
// which says nothing about the double. A hang still ends at -timeout.
func scaleCtx(t *testing.T) context.Context {
	deadline, ok := t.Deadline()
	if !ok {
		return testCtx(t)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-10*time.Second))
	t.Cleanup(cancel)
	return ctx
}

func fwInfo(name string, caps ...mesos.FrameworkInfo_Capability_Type) mesos.FrameworkInfo {
	info := mesos.FrameworkInfo{User: "root", Name: name}
	for _, c := range caps {
		info.Capabilities = append(info.Capabilities, mesos.FrameworkInfo_Capability{Type: c})
	}
	return info
}

func subscribe(t *testing.T, ctx context.Context, url, ct string, info mesos.FrameworkInfo) *simtest.Scheduler {
	t.Helper()
	s, err := simtest.Subscribe(ctx, url, ct, info)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func nextOffer(t *testing.T, ctx context.Context, s *simtest.Scheduler) mesos.Offer {
	t.Helper()
	ev, err := s.Next(ctx, scheduler.Event_OFFERS)
	if err != nil {
		t.Fatal(err)
	}
	return ev.Offers.Offers[0]
}

func launchCall(o mesos.Offer, tasks ...mesos.TaskInfo) *scheduler.Call {
	for i := range tasks {
		tasks[i].AgentID = o.AgentID
	}
	return &scheduler.Call{Type: scheduler.Call_ACCEPT, Accept: &scheduler.Call_Accept{
		OfferIDs:   []mesos.OfferID{o.ID},
		Operations: []mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH, Launch: &mesos.Offer_Operation_Launch{TaskInfos: tasks}}},
	}}
}

func commandTask(id, cmd string, res []mesos.Resource) mesos.TaskInfo {
	return mesos.TaskInfo{Name: id, TaskID: mesos.TaskID{Value: id}, Resources: res, Command: &mesos.CommandInfo{Value: &cmd}}
}

func executorTask(id string, exec mesos.ExecutorInfo, res []mesos.Resource) mesos.TaskInfo {
	return mesos.TaskInfo{Name: id, TaskID: mesos.TaskID{Value: id}, Resources: res, Executor: &exec}
}

func testExecutor(id string) mesos.ExecutorInfo {
	shell := false
	bin := testExecutorBin
	return mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: id}, Command: &mesos.CommandInfo{Value: &bin, Shell: &shell}}
}

// getState fetches a state endpoint.
func getState(t *testing.T, ctx context.Context, url string) map[string]any {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
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

// eventually polls cond until it holds or ctx ends.
func eventually(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
