package mesos_test

import (
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
)

// TestTaskStatusesInOrder: a task's updates as a real agent sends them
// (the command executor's STARTING, RUNNING, FINISHED, each with its
// timestamp and uuid, resent until acknowledged) reach the handler in the
// order Mesos sent them, each once, although the client handles updates on
// several workers; a failed launch reaches it as Mesos 1.11 reports it.
func TestTaskStatusesInOrder(t *testing.T) {
	res, err := mesossim.ParseResources("cpus:4;mem:2048")
	if err != nil {
		t.Fatal(err)
	}
	s := startSim(t, mesossim.Config{Agents: []agent.Config{{Resources: res, StatusUpdateRetryInterval: 200 * time.Millisecond}}})
	ctx := testCtx(t)
	r, _ := runClient(t, ctx, brokermesos.Config{Detector: brokermesos.StaticMaster(s.MasterURL()), Framework: framework(), StatusWorkers: 4})
	r.rec.next(t, ctx, scheduler.Event_SUBSCRIBED)
	offer := r.rec.next(t, ctx, scheduler.Event_OFFERS).GetOffers().Offers[0]
	task := func(id, cmd string, uris ...mesos.CommandInfo_URI) mesos.TaskInfo {
		taskRes, _ := mesossim.ParseResources("cpus:0.5;mem:64")
		return mesos.TaskInfo{Name: id, TaskID: mesos.TaskID{Value: id}, AgentID: offer.AgentID, Resources: taskRes,
			Command: &mesos.CommandInfo{Value: &cmd, URIs: uris}}
	}
	launch := calls.Accept(calls.OfferOperations{calls.OpLaunch(
		task("ok", "sleep 0.2"),
		task("unfetchable", "true", mesos.CommandInfo_URI{Value: "/nonexistent/k8sm-executor"}),
	)}.WithOffers(offer.ID))
	if err := r.c.Call(ctx, launch); err != nil {
		t.Fatal(err)
	}
	seen := map[string][]*mesos.TaskStatus{}
	for len(seen["ok"]) == 0 || !terminal(seen["ok"]) || len(seen["unfetchable"]) == 0 {
		st := r.rec.next(t, ctx, scheduler.Event_UPDATE).GetUpdate().Status
		seen[st.TaskID.Value] = append(seen[st.TaskID.Value], &st)
	}
	var states []mesos.TaskState
	last := 0.0
	for _, st := range seen["ok"] {
		states = append(states, st.GetState())
		if st.GetTimestamp() < last || st.GetTimestamp() == 0 {
			t.Errorf("task ok: %s carries timestamp %v after %v", st.GetState(), st.GetTimestamp(), last)
		}
		last = st.GetTimestamp()
	}
	if want := []mesos.TaskState{mesos.TASK_STARTING, mesos.TASK_RUNNING, mesos.TASK_FINISHED}; !equalStates(states, want) {
		t.Errorf("task ok reached the handler as %v, want %v in that order, each once", states, want)
	}
	f := seen["unfetchable"]
	if len(f) != 1 || f[0].GetState() != mesos.TASK_FAILED || f[0].GetReason() != mesos.REASON_CONTAINER_LAUNCH_FAILED || f[0].GetSource() != mesos.SOURCE_AGENT || f[0].GetTimestamp() == 0 {
		t.Errorf("task unfetchable reached the handler as %v, want one TASK_FAILED, REASON_CONTAINER_LAUNCH_FAILED from the agent, with a timestamp", f)
	}
}

func terminal(sts []*mesos.TaskStatus) bool {
	return sts[len(sts)-1].GetState() == mesos.TASK_FINISHED || sts[len(sts)-1].GetState() == mesos.TASK_FAILED
}

func equalStates(a, b []mesos.TaskState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
