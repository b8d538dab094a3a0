package mesossim_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
)

// TestAcceptWithRescindedOffers: an ACCEPT whose offers were rescinded as it
// reached the master is answered 202 like any other, and then its tasks are
// reported TASK_DROPPED by the master (REASON_INVALID_OFFERS, no uuid).
func TestAcceptWithRescindedOffers(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), "application/json", fwInfo("rescind", mesos.FrameworkInfo_Capability_PARTITION_AWARE))
	o := nextOffer(t, ctx, sched)
	if err := s.InjectCallFault(mesossim.CallFault{Type: scheduler.Call_ACCEPT, Count: 1, RescindOffers: true}); err != nil {
		t.Fatal(err)
	}
	if err := sched.MustAccept(ctx, launchCall(o, commandTask("t", "sleep 100", resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatalf("ACCEPT of rescinded offers: %v, want 202", err)
	}
	st, err := sched.Update(ctx, "t", mesos.TASK_DROPPED)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetSource() != mesos.SOURCE_MASTER || st.GetReason() != mesos.REASON_INVALID_OFFERS || len(st.UUID) != 0 {
		t.Errorf("dropped update %v, want the master's, REASON_INVALID_OFFERS, without uuid", st)
	}
	// The fault was for one call: the resources are offered again and
	// the next launch runs.
	o = nextOffer(t, ctx, sched)
	if err := sched.MustAccept(ctx, launchCall(o, commandTask("t2", "sleep 100", resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	if _, err := sched.Update(ctx, "t2", mesos.TASK_RUNNING); err != nil {
		t.Fatal(err)
	}
}

// TestHollowNoCheckpoint: a hollow agent told not to checkpoint runs tasks
// without writing its executors' state to disk; by default it writes it.
func TestHollowNoCheckpoint(t *testing.T) {
	for _, skip := range []bool{false, true} {
		ac := hollowAgent(t, "cpus:4;mem:2048")
		ac.HollowNoCheckpoint = skip
		ac.WorkDir = t.TempDir()
		s := startSim(t, mesossim.Config{Agents: []agent.Config{ac}})
		ctx := testCtx(t)
		sched := subscribe(t, ctx, s.MasterURL(), "application/json", fwInfo("ckpt"))
		o := nextOffer(t, ctx, sched)
		if err := sched.MustAccept(ctx, launchCall(o, commandTask("t", "sleep 100", resources(t, "cpus:1;mem:64")))); err != nil {
			t.Fatal(err)
		}
		if _, err := sched.Update(ctx, "t", mesos.TASK_RUNNING); err != nil {
			t.Fatal(err)
		}
		files, err := filepath.Glob(filepath.Join(ac.WorkDir, "meta", "slaves", "*", "checkpoint.log"))
		if err != nil {
			t.Fatal(err)
		}
		written := false
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil && fi.Size() > 0 {
				written = true
			}
		}
		switch {
		case skip && written:
			t.Errorf("HollowNoCheckpoint: the agent wrote %v", files)
		case !skip && !written:
			entries, _ := os.ReadDir(filepath.Join(ac.WorkDir, "meta"))
			t.Errorf("by default the hollow agent checkpoints its executor; meta holds %v", entries)
		}
	}
}

// TestIdleHollowAgentsHoldNoFile: an agent without executors keeps no
// checkpoint file open. The bench runs 10,000 hollow agents in one process
// under a 20,000-descriptor limit: one open log per agent, beside each
// agent's listener and connection, ran it out of descriptors.
func TestIdleHollowAgentsHoldNoFile(t *testing.T) {
	var agents []agent.Config
	for range 20 {
		agents = append(agents, hollowAgent(t, "cpus:4;mem:2048"))
	}
	workDir := t.TempDir()
	s := startSim(t, mesossim.Config{Agents: agents, WorkDir: workDir})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), "application/json", fwInfo("idle"))
	o := nextOffer(t, ctx, sched)
	if open := openFilesUnder(t, workDir); len(open) != 0 {
		t.Errorf("20 registered agents without executors hold %d files open: %v", len(open), open)
	}
	// A launch opens its agent's log; checkpointing still works.
	if err := sched.MustAccept(ctx, launchCall(o, commandTask("t", "sleep 100", resources(t, "cpus:1;mem:64")))); err != nil {
		t.Fatal(err)
	}
	if _, err := sched.Update(ctx, "t", mesos.TASK_RUNNING); err != nil {
		t.Fatal(err)
	}
	if open := openFilesUnder(t, workDir); len(open) > 1 {
		t.Errorf("with one executor on one agent %d files are open: %v", len(open), open)
	}
}

// openFilesUnder lists the files under dir this process holds open.
func openFilesUnder(t *testing.T, dir string) []string {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatalf("listing this process's descriptors: %v", err)
	}
	var open []string
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+string(filepath.Separator)) {
			open = append(open, target)
		}
	}
	return open
}
