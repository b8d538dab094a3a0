package mesossim_test

import (
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
)

// TestLaunchAckKillReconcile walks one task through its life on a hollow
// agent, as a scheduler sees it.
func TestLaunchAckKillReconcile(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("life"))
			o := nextOffer(t, ctx, sched)
			task := executorTask("t1", mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "e1"}, Command: &mesos.CommandInfo{}}, resources(t, "cpus:1;mem:128"))
			if err := sched.MustAccept(ctx, launchCall(o, task)); err != nil {
				t.Fatal(err)
			}
			running, err := sched.Update(ctx, "t1", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			if len(running.UUID) != 16 || running.AgentID == nil || running.AgentID.Value != o.AgentID.Value {
				t.Fatalf("RUNNING update uuid=%x agent=%v", running.UUID, running.AgentID)
			}
			if running.GetSource() != mesos.SOURCE_EXECUTOR {
				t.Errorf("source = %v", running.GetSource())
			}
			// Not acknowledged: the agent resends the same update.
			again, err := sched.Update(ctx, "t1", mesos.TASK_RUNNING)
			if err != nil {
				t.Fatal(err)
			}
			if string(again.UUID) != string(running.UUID) {
				t.Fatalf("resent update has uuid %x, want %x", again.UUID, running.UUID)
			}
			if err := sched.Ack(ctx, running); err != nil {
				t.Fatal(err)
			}

			// Explicit reconciliation of a known and an unknown task: no uuid.
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_RECONCILE, Reconcile: &scheduler.Call_Reconcile{Tasks: []scheduler.Call_Reconcile_Task{
				{TaskID: mesos.TaskID{Value: "t1"}}, {TaskID: mesos.TaskID{Value: "ghost"}},
			}}}); err != nil {
				t.Fatal(err)
			}
			rec, err := sched.Wait(ctx, func(e *scheduler.Event) bool {
				return e.Type == scheduler.Event_UPDATE && e.Update.Status.GetReason() == mesos.REASON_RECONCILIATION && e.Update.Status.TaskID.Value == "t1"
			})
			if err != nil {
				t.Fatal(err)
			}
			if st := rec.Update.Status; st.GetState() != mesos.TASK_RUNNING || len(st.UUID) != 0 || st.GetSource() != mesos.SOURCE_MASTER {
				t.Errorf("reconcile t1: state %v uuid %x source %v", st.GetState(), st.UUID, st.GetSource())
			}
			ghost, err := sched.Update(ctx, "ghost", mesos.TASK_LOST)
			if err != nil {
				t.Fatal(err)
			}
			if len(ghost.UUID) != 0 || ghost.GetReason() != mesos.REASON_RECONCILIATION {
				t.Errorf("reconcile ghost: %v", ghost)
			}
			// Implicit reconciliation returns every known task.
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_RECONCILE, Reconcile: &scheduler.Call_Reconcile{}}); err != nil {
				t.Fatal(err)
			}
			if _, err := sched.Wait(ctx, func(e *scheduler.Event) bool {
				return e.Type == scheduler.Event_UPDATE && e.Update.Status.GetReason() == mesos.REASON_RECONCILIATION && e.Update.Status.TaskID.Value == "t1"
			}); err != nil {
				t.Fatal(err)
			}

			killed := killTask(t, ctx, sched, "t1")
			if err := sched.Ack(ctx, killed); err != nil {
				t.Fatal(err)
			}
			// Once the terminal update is acknowledged the task leaves the master.
			eventually(t, ctx, "task to complete in state", func() bool {
				st := getState(t, ctx, s.MasterURL()+"/master/state")
				fw := st["frameworks"].([]any)[0].(map[string]any)
				return len(fw["tasks"].([]any)) == 0 && len(fw["completed_tasks"].([]any)) == 1
			})
			// Killing an unknown task is answered through reconciliation.
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_KILL, Kill: &scheduler.Call_Kill{TaskID: mesos.TaskID{Value: "nobody"}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := sched.Update(ctx, "nobody", mesos.TASK_LOST); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStaleOfferAccept: accepting an offer that is gone reports the tasks
// TASK_LOST, or TASK_DROPPED to PARTITION_AWARE frameworks, with no uuid.
func TestStaleOfferAccept(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	for _, pa := range []bool{false, true} {
		for _, ct := range encodings {
			ctx := testCtx(t)
			info := fwInfo("stale")
			want := mesos.TASK_LOST
			if pa {
				info = fwInfo("stale", mesos.FrameworkInfo_Capability_PARTITION_AWARE)
				want = mesos.TASK_DROPPED
			}
			sched := subscribe(t, ctx, s.MasterURL(), ct, info)
			o := nextOffer(t, ctx, sched)
			if err := s.RescindOffer(o.ID.Value); err != nil {
				t.Fatal(err)
			}
			if _, err := sched.Next(ctx, scheduler.Event_RESCIND); err != nil {
				t.Fatal(err)
			}
			task := commandTask("late", "true", resources(t, "cpus:1;mem:64"))
			if err := sched.MustAccept(ctx, launchCall(o, task)); err != nil {
				t.Fatal(err)
			}
			st, err := sched.Update(ctx, "late", want)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.UUID) != 0 || st.GetReason() != mesos.REASON_INVALID_OFFERS || st.GetSource() != mesos.SOURCE_MASTER {
				t.Errorf("%s pa=%v: update %v", ct, pa, st)
			}
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestInvalidTask: a task asking for more than the offer gets TASK_ERROR.
func TestInvalidTask(t *testing.T) {
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:1;mem:256")}})
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("invalid"))
			o := nextOffer(t, ctx, sched)
			task := commandTask("huge", "true", resources(t, "cpus:8;mem:64"))
			if err := sched.MustAccept(ctx, launchCall(o, task)); err != nil {
				t.Fatal(err)
			}
			st, err := sched.Update(ctx, "huge", mesos.TASK_ERROR)
			if err != nil {
				t.Fatal(err)
			}
			if st.GetReason() != mesos.REASON_TASK_INVALID || len(st.UUID) != 0 {
				t.Errorf("TASK_ERROR update %v", st)
			}
		})
	}
}

// TestDeclineReviveSuppress checks decline filters, REVIVE clearing them and SUPPRESS stopping offers.
func TestDeclineReviveSuppress(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			ctx := testCtx(t)
			sched := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("decline"))
			o := nextOffer(t, ctx, sched)
			// A short filter: the same resources come back after it expires.
			short := 0.2
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{
				OfferIDs: []mesos.OfferID{o.ID}, Filters: &mesos.Filters{RefuseSeconds: &short}}}); err != nil {
				t.Fatal(err)
			}
			o2 := nextOffer(t, ctx, sched)
			if o2.ID == o.ID {
				t.Fatal("re-offer reused the offer id")
			}
			// A long filter: nothing comes back for several heartbeats...
			long := 3600.0
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{
				OfferIDs: []mesos.OfferID{o2.ID}, Filters: &mesos.Filters{RefuseSeconds: &long}}}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if _, err := sched.Next(ctx, scheduler.Event_HEARTBEAT); err != nil {
					t.Fatal(err)
				}
			}
			for _, e := range sched.Events() {
				if e.Type == scheduler.Event_OFFERS {
					t.Fatalf("offer %v arrived despite a refuse filter", e.Offers.Offers[0].ID)
				}
			}
			// ...until REVIVE clears the filters.
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE}); err != nil {
				t.Fatal(err)
			}
			o3 := nextOffer(t, ctx, sched)
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_SUPPRESS}); err != nil {
				t.Fatal(err)
			}
			zero := 0.0
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{
				OfferIDs: []mesos.OfferID{o3.ID}, Filters: &mesos.Filters{RefuseSeconds: &zero}}}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 3; i++ {
				if _, err := sched.Next(ctx, scheduler.Event_HEARTBEAT); err != nil {
					t.Fatal(err)
				}
			}
			for _, e := range sched.Events() {
				if e.Type == scheduler.Event_OFFERS {
					t.Fatal("offer arrived while suppressed")
				}
			}
			st := getState(t, ctx, s.MasterURL()+"/master/state")
			fw := st["frameworks"].([]any)[0].(map[string]any)
			if sr := fw["suppressed_roles"].([]any); len(sr) != 1 || sr[0] != "*" {
				t.Errorf("suppressed_roles = %v", sr)
			}
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE}); err != nil {
				t.Fatal(err)
			}
			nextOffer(t, ctx, sched)
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDefaultRefuseSeconds: a DECLINE without filters refuses for 5 seconds.
func TestDefaultRefuseSeconds(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), encodings[0], fwInfo("default-filter"))
	o := nextOffer(t, ctx, sched)
	declined := time.Now()
	if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{OfferIDs: []mesos.OfferID{o.ID}}}); err != nil {
		t.Fatal(err)
	}
	nextOffer(t, ctx, sched)
	// The re-offer can only come after the default filter expired.
	if waited := time.Since(declined); waited < 5*time.Second {
		t.Fatalf("re-offered after %v, before the 5s default filter expired", waited)
	}
}

// TestMultiRoleAndFrameworksApart: a MULTI_ROLE framework sees allocation
// info and reserved resources of its role; two frameworks never share offered resources.
func TestMultiRoleAndFrameworksApart(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{
		hollowAgent(t, "cpus:2;mem:1024"),
		hollowAgent(t, "cpus(web):2;mem(web):512;cpus:1;mem:256"),
	}})
	for _, ct := range encodings {
		t.Run(ct, func(t *testing.T) {
			ctx := testCtx(t)
			multi := fwInfo("multi", mesos.FrameworkInfo_Capability_MULTI_ROLE)
			multi.Roles = []string{"web"}
			a := subscribe(t, ctx, s.MasterURL(), ct, multi)
			b := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("plain"))
			seenWebReserved := false
			offersA := map[string]bool{}
			offersB := map[string]bool{}
			for len(offersA)+len(offersB) < 2 || !seenWebReserved {
				ev, err := a.Next(ctx, scheduler.Event_OFFERS)
				if err != nil {
					t.Fatal(err)
				}
				for _, o := range ev.Offers.Offers {
					if o.AllocationInfo.GetRole() != "web" {
						t.Fatalf("MULTI_ROLE offer allocation_info = %v", o.AllocationInfo)
					}
					offersA[o.AgentID.Value] = true
					for _, r := range o.Resources {
						if r.AllocationInfo.GetRole() != "web" {
							t.Fatalf("MULTI_ROLE resource without allocation_info: %v", r)
						}
						if r.GetRole() == "web" {
							seenWebReserved = true
						}
					}
				}
				for _, e := range b.Events() {
					if e.Type != scheduler.Event_OFFERS {
						continue
					}
					for _, o := range e.Offers.Offers {
						offersB[o.AgentID.Value] = true
						for _, r := range o.Resources {
							if r.GetRole() == "web" {
								t.Fatalf("framework of role * got resources reserved for web: %v", r)
							}
						}
					}
				}
			}
			// Offers to one framework are not valid for the other.
			var oa mesos.Offer
			for _, e := range a.Events() {
				if e.Type == scheduler.Event_OFFERS {
					oa = e.Offers.Offers[0]
				}
			}
			task := commandTask("steal", "true", resources(t, "cpus:0.1;mem:32"))
			if err := b.MustAccept(ctx, launchCall(oa, task)); err != nil {
				t.Fatal(err)
			}
			if _, err := b.Update(ctx, "steal", mesos.TASK_LOST); err != nil {
				t.Fatal(err)
			}
			_ = a.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN})
			_ = b.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN})
		})
	}
}

// TestSuppressRevivePerRole: SUPPRESS and REVIVE with roles affect only those roles.
func TestSuppressRevivePerRole(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:2;mem:512")}})
	for _, ct := range encodings {
		ctx := testCtx(t)
		info := fwInfo("roles", mesos.FrameworkInfo_Capability_MULTI_ROLE)
		info.Roles = []string{"a", "b"}
		sched := subscribe(t, ctx, s.MasterURL(), ct, info)
		zero := 0.0
		declineNext := func() string {
			t.Helper()
			o := nextOffer(t, ctx, sched)
			if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_DECLINE, Decline: &scheduler.Call_Decline{
				OfferIDs: []mesos.OfferID{o.ID}, Filters: &mesos.Filters{RefuseSeconds: &zero}}}); err != nil {
				t.Fatal(err)
			}
			return o.AllocationInfo.GetRole()
		}
		declineNext()
		if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_SUPPRESS, Suppress: &scheduler.Call_Suppress{Roles: []string{"a"}}}); err != nil {
			t.Fatal(err)
		}
		// Offers made before the SUPPRESS took effect may still name "a"; after a few, only "b".
		for i := 0; i < 3; i++ {
			declineNext()
		}
		for i := 0; i < 3; i++ {
			if role := declineNext(); role != "b" {
				t.Fatalf("offer for suppressed role %q", role)
			}
		}
		if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_REVIVE, Revive: &scheduler.Call_Revive{Roles: []string{"a"}}}); err != nil {
			t.Fatal(err)
		}
		if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_SUPPRESS, Suppress: &scheduler.Call_Suppress{Roles: []string{"b"}}}); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			declineNext()
		}
		for i := 0; i < 3; i++ {
			if role := declineNext(); role != "a" {
				t.Fatalf("offer for role %q after reviving a and suppressing b", role)
			}
		}
		if err := sched.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestGPUAgentsOnlyForGPUFrameworks: agents with GPUs are offered only to
// frameworks with the GPU_RESOURCES capability.
func TestGPUAgentsOnlyForGPUFrameworks(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:2;mem:512;gpus:1"), hollowAgent(t, "cpus:2;mem:512")}})
	for _, ct := range encodings {
		ctx := testCtx(t)
		plain := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("plain"))
		gpu := subscribe(t, ctx, s.MasterURL(), ct, fwInfo("gpu", mesos.FrameworkInfo_Capability_GPU_RESOURCES))
		// Nobody else may take the GPU agent, so it is in the GPU framework's offers.
		ev, err := gpu.Next(ctx, scheduler.Event_OFFERS)
		if err != nil {
			t.Fatal(err)
		}
		hasGPU := false
		for _, o := range ev.Offers.Offers {
			for _, r := range o.Resources {
				hasGPU = hasGPU || r.Name == "gpus"
			}
		}
		if !hasGPU {
			t.Fatalf("GPU framework offers lack the GPU agent: %v", ev.Offers.Offers)
		}
		op := nextOffer(t, ctx, plain)
		for _, r := range op.Resources {
			if r.Name == "gpus" {
				t.Fatalf("framework without GPU_RESOURCES offered %v", op.Resources)
			}
		}
		_ = plain.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN})
		_ = gpu.MustAccept(ctx, &scheduler.Call{Type: scheduler.Call_TEARDOWN})
	}
}

// TestIncompatibleExecutorInfo: a task naming a running executor's id with
// another ExecutorInfo gets TASK_ERROR, as the real master answers; the same
// ExecutorInfo (its resources listed in another order) joins the executor.
func TestIncompatibleExecutorInfo(t *testing.T) {
	s := startSim(t, mesossim.Config{Agents: []agent.Config{hollowAgent(t, "cpus:4;mem:2048")}})
	ctx := testCtx(t)
	sched := subscribe(t, ctx, s.MasterURL(), encodings[0], fwInfo("compat"))
	o := nextOffer(t, ctx, sched)
	cmd, other := "/bin/executor", "/bin/other"
	exec := mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "e1"}, Command: &mesos.CommandInfo{Value: &cmd}, Resources: resources(t, "cpus:0.5;mem:32")}
	changed := exec
	changed.Command = &mesos.CommandInfo{Value: &other}
	reordered := exec
	reordered.Resources = resources(t, "mem:32;cpus:0.25;cpus:0.25")
	if err := sched.MustAccept(ctx, launchCall(o,
		executorTask("first", exec, resources(t, "cpus:1;mem:128")),
		executorTask("changed", changed, resources(t, "cpus:1;mem:128")),
		executorTask("same", reordered, resources(t, "cpus:1;mem:128")),
	)); err != nil {
		t.Fatal(err)
	}
	st, err := sched.Update(ctx, "changed", mesos.TASK_ERROR)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetReason() != mesos.REASON_TASK_INVALID || !strings.Contains(st.GetMessage(), "ExecutorInfo is not compatible") {
		t.Errorf("TASK_ERROR update %v", st)
	}
	for _, id := range []string{"first", "same"} {
		if _, err := sched.Update(ctx, id, mesos.TASK_RUNNING); err != nil {
			t.Fatalf("task %s: %v", id, err)
		}
	}
}
