package mesossim_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// serveExecutor serves the test executor binary at /bin/testexecutor and
// counts the downloads.
func serveExecutor(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/bin/testexecutor" {
			http.NotFound(w, r)
			return
		}
		gets.Add(1)
		http.ServeFile(w, r, testExecutorBin)
	}))
	t.Cleanup(srv.Close)
	return srv, &gets
}

// fetchedExecutor is the test executor named by an http URI, run from the
// sandbox as a real cluster's executor is.
func fetchedExecutor(id, uri string) mesos.ExecutorInfo {
	shell, yes, no := false, true, false
	cmd := "./testexecutor"
	return mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: id}, Command: &mesos.CommandInfo{
		Value: &cmd, Shell: &shell,
		URIs: []mesos.CommandInfo_URI{{Value: uri, Executable: &yes, Extract: &no, Cache: &yes}},
	}}
}

// TestFetchedExecutor: the agent downloads an executor named by an http URI
// into the sandbox (executable), runs it from there, and with cache=true
// downloads it once for two executors.
func TestFetchedExecutor(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			srv, gets := serveExecutor(t)
			s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("fetch"))
			o := nextOffer(t, ctx, sched)
			res := resources(t, "cpus:1;mem:128")
			e1, e2 := fetchedExecutor("e1", srv.URL+"/bin/testexecutor"), fetchedExecutor("e2", srv.URL+"/bin/testexecutor")
			if err := sched.MustAccept(ctx, launchCall(o, executorTask("t1", e1, res), executorTask("t2", e2, res))); err != nil {
				t.Fatal(err)
			}
			for _, id := range []string{"t1", "t2"} {
				st, err := sched.Update(ctx, id, mesos.TASK_RUNNING)
				if err != nil {
					t.Fatal(err)
				}
				ack(t, ctx, sched, st)
			}
			if n := gets.Load(); n != 1 {
				t.Fatalf("the cached executor was downloaded %d times for two executors, want once", n)
			}
		})
	}
}

// TestFetchFailureFailsTasks: a URI the fetcher cannot get fails the tasks
// as Mesos 1.11 does (slave.cpp executorLaunched): TASK_FAILED,
// REASON_CONTAINER_LAUNCH_FAILED, SOURCE_AGENT, and the containerizer's
// message; the detail is in the sandbox's stderr.
func TestFetchFailureFailsTasks(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			srv, _ := serveExecutor(t)
			s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("fetch"))
			o := nextOffer(t, ctx, sched)
			e := fetchedExecutor("e1", srv.URL+"/bin/missing")
			if err := sched.MustAccept(ctx, launchCall(o, executorTask("t1", e, resources(t, "cpus:1;mem:128")))); err != nil {
				t.Fatal(err)
			}
			st, err := sched.Update(ctx, "t1", mesos.TASK_FAILED)
			if err != nil {
				t.Fatal(err)
			}
			if st.GetReason() != mesos.REASON_CONTAINER_LAUNCH_FAILED || st.GetSource() != mesos.SOURCE_AGENT {
				t.Fatalf("reason %v source %v, want REASON_CONTAINER_LAUNCH_FAILED from SOURCE_AGENT", st.GetReason(), st.GetSource())
			}
			if msg := st.GetMessage(); !strings.HasPrefix(msg, "Failed to launch container: Failed to fetch all URIs for container '") ||
				!strings.HasSuffix(msg, "': exited with status 1") {
				t.Fatalf("message %q is not the containerizer's", msg)
			}
			// Before the acknowledgement: the agent forgets a terminated
			// executor once its updates are delivered.
			state := getState(t, ctx, "http://"+s.Agent(0).Endpoint()+"/state")
			dir := sandboxOf(state, "e1")
			b, err := os.ReadFile(dir + "/stderr")
			if err != nil || !strings.Contains(string(b), "received HTTP return code 404") {
				t.Fatalf("sandbox stderr %q (%v) does not give the reason", b, err)
			}
			ack(t, ctx, sched, st)
		})
	}
}

// sandboxOf finds executor id's directory in an agent's /state.
func sandboxOf(state map[string]any, id string) string {
	for _, key := range []string{"frameworks", "completed_frameworks"} {
		fws, _ := state[key].([]any)
		for _, f := range fws {
			fw, _ := f.(map[string]any)
			for _, ekey := range []string{"executors", "completed_executors"} {
				execs, _ := fw[ekey].([]any)
				for _, x := range execs {
					e, _ := x.(map[string]any)
					if e["id"] == id {
						d, _ := e["directory"].(string)
						return d
					}
				}
			}
		}
	}
	return ""
}

// TestCorruptExecutorDownloadIsNotRun: the broker's ExecutorInfo
// (pkg/taskinfo with the binary's sha256) runs a fetched executor only when
// it is the one the URI names. A download corrupted on the way (one byte
// flipped, which the file would not show by failing to exec) fails the
// launch as an executor that ends before registering does in Mesos 1.11:
// TASK_FAILED, REASON_EXECUTOR_TERMINATED, and the sandbox's stderr says
// what was wrong.
func TestCorruptExecutorDownloadIsNotRun(t *testing.T) {
	good, err := os.ReadFile(testExecutorBin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(good)
	bad := append([]byte(nil), good...)
	bad[len(bad)-1] ^= 0xff
	serve := func(b []byte) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(b) }))
		t.Cleanup(srv.Close)
		return srv.URL + "/executor/sha256/" + hex.EncodeToString(sum[:]) + "/testexecutor"
	}
	s := startSim(t, mesossim.Config{Agents: []agent.Config{realAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), wire.Protobuf, fwInfo("checksum"))
	executor := func(uri string) mesos.ExecutorInfo {
		yes, no := true, false
		return *taskinfo.NewExecutorInfo(mesos.FrameworkID{Value: sched.FrameworkID}, taskinfo.ExecutorConfig{Command: "./testexecutor", SHA256: hex.EncodeToString(sum[:]),
			URIs: []mesos.CommandInfo_URI{{Value: uri, Executable: &yes, Extract: &no, Cache: &yes}}})
	}
	o := nextOffer(t, ctx, sched)
	res := resources(t, "cpus:1;mem:128")
	corrupt, intact := executor(serve(bad)), executor(serve(good))
	intact.ExecutorID.Value += "-intact" // the two differ only in their URI's host
	if err := sched.MustAccept(ctx, launchCall(o, executorTask("corrupt", corrupt, res), executorTask("intact", intact, res))); err != nil {
		t.Fatal(err)
	}
	st, err := sched.Update(ctx, "intact", mesos.TASK_RUNNING)
	if err != nil {
		t.Fatalf("the executor whose download is intact: %v", err)
	}
	ack(t, ctx, sched, st)
	st, err = sched.Update(ctx, "corrupt", mesos.TASK_FAILED)
	if err != nil {
		t.Fatalf("the executor whose download is corrupt: %v", err)
	}
	if st.GetReason() != mesos.REASON_EXECUTOR_TERMINATED || st.GetSource() != mesos.SOURCE_AGENT {
		t.Errorf("corrupt executor: reason %v source %v, want REASON_EXECUTOR_TERMINATED from SOURCE_AGENT", st.GetReason(), st.GetSource())
	}
	dir := sandboxOf(getState(t, ctx, "http://"+s.Agent(0).Endpoint()+"/state"), corrupt.ExecutorID.Value)
	b, err := os.ReadFile(dir + "/stderr")
	if want := "k8sm: the fetched executor ./testexecutor does not have the sha256 " + hex.EncodeToString(sum[:]); err != nil || !strings.Contains(string(b), want) {
		t.Errorf("sandbox stderr %q (%v) does not say %q", b, err, want)
	}
	ack(t, ctx, sched, st)
}
