package master

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	operator "github.com/mesos/mesos-go/api/v1/lib/master"
	"github.com/mesos/mesos-go/api/v1/lib/resources"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/allocator"
)

func (m *Master) allocate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.elected {
		return
	}
	allocs := m.alloc.Cycle(time.Now())
	byFramework := map[string][]mesos.Offer{}
	var order []string
	for _, a := range allocs {
		fw := m.frameworks[a.FrameworkID]
		ag := m.agents[a.AgentID]
		if fw == nil || ag == nil || fw.conn == nil {
			m.alloc.Recover(a.FrameworkID, a.AgentID, a.Resources, 0, time.Now())
			continue
		}
		o := m.newOffer(fw, ag, a)
		if _, ok := byFramework[fw.id]; !ok {
			order = append(order, fw.id)
		}
		byFramework[fw.id] = append(byFramework[fw.id], m.offerFor(fw, o))
	}
	for _, id := range order {
		fw := m.frameworks[id]
		klog.V(2).InfoS("Sending offers", "framework", id, "count", len(byFramework[id]))
		fw.conn.Send(&scheduler.Event{Type: scheduler.Event_OFFERS, Offers: &scheduler.Event_Offers{Offers: byFramework[id]}})
	}
}

func (m *Master) newOffer(fw *framework, ag *agentEntry, a allocator.Allocation) *offer {
	id := fmt.Sprintf("%s-O%d", m.cfg.ID, m.nextOffer)
	m.nextOffer++
	role := a.Role
	o := &offer{framework: fw.id, agent: ag.info.ID.Value, role: role, resources: a.Resources}
	scheme := "http"
	ip := ag.ip
	o.offer = mesos.Offer{
		ID:          mesos.OfferID{Value: id},
		FrameworkID: mesos.FrameworkID{Value: fw.id},
		AgentID:     *ag.info.ID,
		Hostname:    ag.info.Hostname,
		URL: &mesos.URL{
			Scheme:  scheme,
			Address: mesos.Address{Hostname: &ag.info.Hostname, IP: &ip, Port: int32(ag.port)},
			Path:    strPtr("/slave(1)"),
		},
		Attributes:     ag.info.Attributes,
		AllocationInfo: &mesos.Resource_AllocationInfo{Role: &role},
	}
	for eid := range fw.executors[o.agent] {
		o.offer.ExecutorIDs = append(o.offer.ExecutorIDs, mesos.ExecutorID{Value: eid})
	}
	m.offers[id] = o
	fw.offers[id] = o
	if m.cfg.OfferTimeout > 0 {
		o.timer = time.AfterFunc(m.cfg.OfferTimeout, func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if cur := m.offers[id]; cur == o {
				klog.InfoS("Offer timed out, rescinding", "offer", id, "framework", fw.id)
				m.rescind(o)
			}
		})
	}
	return o
}

func strPtr(s string) *string { return &s }

// offerFor shapes an offer for a framework's capabilities: allocation info
// only for MULTI_ROLE frameworks (MESOS-8237), and the pre-refinement
// reservation format unless RESERVATION_REFINEMENT is declared.
func (m *Master) offerFor(fw *framework, o *offer) mesos.Offer {
	out := o.offer
	out.Resources = make([]mesos.Resource, 0, len(o.resources))
	for _, r := range o.resources {
		r := r
		if fw.multiRole {
			role := o.role
			r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: &role}
		}
		out.Resources = append(out.Resources, externalFormat(r, fw.refinement))
	}
	if !fw.multiRole {
		out.AllocationInfo = nil
	}
	return out
}

// Internally resources use the pre-refinement format (role + reservation).
func externalFormat(r mesos.Resource, refinement bool) mesos.Resource {
	if !refinement {
		if r.Role == nil {
			r.Role = strPtr("*")
		}
		return r
	}
	role := r.GetRole()
	if role != "*" {
		t := mesos.Resource_ReservationInfo_STATIC
		ri := mesos.Resource_ReservationInfo{Type: &t, Role: &role}
		if r.Reservation != nil {
			t = mesos.Resource_ReservationInfo_DYNAMIC
			ri.Type = &t
			ri.Principal = r.Reservation.Principal
			ri.Labels = r.Reservation.Labels
		}
		r.Reservations = []mesos.Resource_ReservationInfo{ri}
	}
	r.Role = nil
	r.Reservation = nil
	return r
}

// internalFormat converts what a framework sent back to the pre-refinement format.
func internalFormat(rs []mesos.Resource) mesos.Resources {
	var out mesos.Resources
	for _, r := range rs {
		r.AllocationInfo = nil
		if n := len(r.Reservations); n > 0 {
			last := r.Reservations[n-1]
			role := last.GetRole()
			r.Role = &role
			if last.GetType() == mesos.Resource_ReservationInfo_DYNAMIC {
				r.Reservation = &mesos.Resource_ReservationInfo{Principal: last.Principal, Labels: last.Labels}
			} else {
				r.Reservation = nil
			}
			r.Reservations = nil
		} else if r.Reservation != nil && r.Reservation.Role != nil {
			r.Reservation = &mesos.Resource_ReservationInfo{Principal: r.Reservation.Principal, Labels: r.Reservation.Labels}
		}
		if r.Role != nil && *r.Role == "*" {
			r.Role = nil
		}
		out.Add1(r)
	}
	return out
}

// removeOffer withdraws an offer without telling the framework and recovers
// its resources, with a decline filter when refuse > 0.
func (m *Master) removeOffer(o *offer, refuse time.Duration) {
	if o.timer != nil {
		o.timer.Stop()
	}
	delete(m.offers, o.offer.ID.Value)
	if fw := m.frameworks[o.framework]; fw != nil {
		delete(fw.offers, o.offer.ID.Value)
	}
	m.alloc.Recover(o.framework, o.agent, o.resources, refuse, time.Now())
}

// rescind withdraws an offer and tells the framework.
func (m *Master) rescind(o *offer) {
	m.removeOffer(o, 0)
	if fw := m.frameworks[o.framework]; fw != nil && fw.conn != nil {
		fw.conn.Send(&scheduler.Event{Type: scheduler.Event_RESCIND, Rescind: &scheduler.Event_Rescind{OfferID: o.offer.ID}})
	}
}

// RescindOffer rescinds an outstanding offer on demand (fault injection).
func (m *Master) RescindOffer(offerID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	o := m.offers[offerID]
	if o == nil {
		return fmt.Errorf("rescinding offer %s: no such outstanding offer", offerID)
	}
	m.rescind(o)
	return nil
}

// Offers lists the ids of outstanding offers, optionally of one framework.
func (m *Master) Offers(frameworkID string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, o := range m.offers {
		if frameworkID == "" || o.framework == frameworkID {
			out = append(out, id)
		}
	}
	return out
}

func (m *Master) validateOffers(fw *framework, ids []mesos.OfferID) error {
	if len(ids) == 0 {
		return errors.New("No offers specified")
	}
	var agent, role string
	seen := map[string]bool{}
	for i, id := range ids {
		if seen[id.Value] {
			return fmt.Errorf("Duplicate offer %s in offer list", id.Value)
		}
		seen[id.Value] = true
		o := m.offers[id.Value]
		if o == nil {
			return fmt.Errorf("Offer %s is no longer valid", id.Value)
		}
		if o.framework != fw.id {
			return fmt.Errorf("Offer %s has invalid framework %s while framework %s is expected", id.Value, o.framework, fw.id)
		}
		if i == 0 {
			agent, role = o.agent, o.role
		} else if o.agent != agent {
			return fmt.Errorf("Aggregated offers must belong to one single agent. Offer %s uses agent %s and agent %s", id.Value, o.agent, agent)
		} else if o.role != role {
			return fmt.Errorf("Aggregated offers must be allocated to the same role. Offer %s uses role %s and role %s", id.Value, o.role, role)
		}
	}
	return nil
}

func (m *Master) accept(fw *framework, acc *scheduler.Call_Accept) {
	if err := m.validateOffers(fw, acc.OfferIDs); err != nil {
		// Offers that are still valid go back to the pool; every task in a
		// launch is reported lost or dropped, like the real master does.
		for _, id := range acc.OfferIDs {
			if o := m.offers[id.Value]; o != nil && o.framework == fw.id {
				m.removeOffer(o, 0)
			}
		}
		state := mesos.TASK_LOST
		if fw.partAware {
			state = mesos.TASK_DROPPED
		}
		for _, op := range acc.Operations {
			var tasks []mesos.TaskInfo
			switch op.Type {
			case mesos.Offer_Operation_LAUNCH:
				tasks = op.GetLaunch().GetTaskInfos()
			case mesos.Offer_Operation_LAUNCH_GROUP:
				tasks = op.GetLaunchGroup().TaskGroup.Tasks
			}
			for _, t := range tasks {
				aid := t.AgentID
				m.sendUpdate(fw, masterUpdate(t.TaskID, &aid, nil, state, "Task launched with invalid offers: "+err.Error(), mesos.REASON_INVALID_OFFERS))
			}
		}
		klog.InfoS("ACCEPT call used invalid offers", "framework", fw.id, "err", err)
		return
	}
	first := m.offers[acc.OfferIDs[0].Value]
	ag := m.agents[first.agent]
	role := first.role
	var available mesos.Resources
	for _, id := range acc.OfferIDs {
		o := m.offers[id.Value]
		available = available.Plus(o.resources...)
		if o.timer != nil {
			o.timer.Stop()
		}
		delete(m.offers, id.Value)
		delete(fw.offers, id.Value)
	}
	// available stays allocated to the framework in the allocator; whatever
	// is left after the operations is recovered at the end.
	for _, op := range acc.Operations {
		switch op.Type {
		case mesos.Offer_Operation_LAUNCH:
			for i := range op.GetLaunch().GetTaskInfos() {
				t := op.Launch.TaskInfos[i]
				available = m.launch(fw, ag, role, available, nil, []mesos.TaskInfo{t})
			}
		case mesos.Offer_Operation_LAUNCH_GROUP:
			lg := op.GetLaunchGroup()
			if lg == nil {
				continue
			}
			exec := lg.Executor
			available = m.launch(fw, ag, role, available, &exec, lg.TaskGroup.Tasks)
		case mesos.Offer_Operation_RESERVE:
			available = m.reserve(fw, ag, available, internalFormat(op.GetReserve().GetResources()), true)
		case mesos.Offer_Operation_UNRESERVE:
			available = m.reserve(fw, ag, available, internalFormat(op.GetUnreserve().GetResources()), false)
		default:
			klog.InfoS("Ignoring unsupported offer operation", "framework", fw.id, "type", op.Type)
		}
	}
	m.alloc.Recover(fw.id, ag.info.ID.Value, available, refuseDuration(acc.Filters), time.Now())
}

// reserve applies RESERVE (or UNRESERVE) to the offered resources and to the
// agent's total, so that later offers show the new shape.
func (m *Master) reserve(fw *framework, ag *agentEntry, available, rs mesos.Resources, reserve bool) mesos.Resources {
	aid := ag.info.ID.Value
	var from, to mesos.Resources
	for _, r := range rs {
		if reserve {
			if r.Role == nil || r.GetRole() == "*" {
				klog.InfoS("Dropping RESERVE without a role", "framework", fw.id)
				return available
			}
			u := r
			u.Role, u.Reservation = nil, nil
			from.Add1(u)
			to.Add1(r)
		} else {
			u := r
			u.Role, u.Reservation = nil, nil
			from.Add1(r)
			to.Add1(u)
		}
	}
	if !resources.ContainsAll(available, from) {
		klog.InfoS("Dropping reservation operation on resources not in the offer", "framework", fw.id, "reserve", reserve)
		return available
	}
	total := m.alloc.AgentTotal(aid).Minus(from...).Plus(to...)
	// The allocator counts `available` as allocated to fw; swap shapes in
	// both places so its bookkeeping stays consistent.
	m.alloc.Recover(fw.id, aid, from, 0, time.Now())
	m.alloc.UpdateAgentTotal(aid, total)
	m.alloc.Allocate(fw.id, aid, to)
	ag.info.Resources = total
	return available.Minus(from...).Plus(to...)
}

func (m *Master) taskError(fw *framework, t mesos.TaskInfo, msg string) {
	aid := t.AgentID
	m.sendUpdate(fw, masterUpdate(t.TaskID, &aid, nil, mesos.TASK_ERROR, msg, mesos.REASON_TASK_INVALID))
}

// launch validates tasks the way the master does before it sends them to the
// agent; an invalid task gets TASK_ERROR and consumes nothing.
func (m *Master) launch(fw *framework, ag *agentEntry, role string, available mesos.Resources, groupExec *mesos.ExecutorInfo, tasks []mesos.TaskInfo) mesos.Resources {
	aid := ag.info.ID.Value
	var need mesos.Resources
	var problem string
	ids := map[string]bool{}
	for _, t := range tasks {
		switch {
		case t.TaskID.Value == "":
			problem = "Task ID must not be empty"
		case ids[t.TaskID.Value] || fw.tasks[t.TaskID.Value] != nil:
			problem = "Task has duplicate ID: " + t.TaskID.Value
		case t.AgentID.Value != aid:
			problem = "Task uses invalid agent " + t.AgentID.Value + " while agent " + aid + " is expected"
		case groupExec == nil && (t.Executor == nil) == (t.Command == nil):
			problem = "Task should have at least one (but not both) of CommandInfo or ExecutorInfo present"
		case groupExec != nil && t.Executor != nil:
			problem = "'TaskInfo.executor' must not be set"
		case len(t.Resources) == 0 && groupExec == nil:
			problem = "Task uses no resources"
		}
		if problem != "" {
			break
		}
		ids[t.TaskID.Value] = true
		need = need.Plus(internalFormat(t.Resources)...)
	}
	exec := groupExec
	if exec == nil && len(tasks) == 1 {
		exec = tasks[0].Executor
	}
	if problem == "" && exec != nil {
		if exec.FrameworkID != nil && exec.FrameworkID.Value != fw.id {
			problem = "ExecutorInfo has an invalid FrameworkID"
		}
		running, ok := fw.executors[aid][exec.ExecutorID.Value]
		switch {
		case !ok:
			need = need.Plus(internalFormat(exec.Resources)...)
		case !compatibleExecutor(running, *exec, fw.id):
			// The real master's words (master/validation.cpp).
			problem = "ExecutorInfo is not compatible with existing ExecutorInfo with same ExecutorID"
		}
	}
	if problem == "" && !resources.ContainsAll(available, need) {
		problem = fmt.Sprintf("Total resources %s required by task and its executor is more than available %s", need, available)
	}
	if problem != "" {
		for _, t := range tasks {
			m.taskError(fw, t, problem)
		}
		return available
	}
	var execCopy *mesos.ExecutorInfo
	if exec != nil {
		e := *exec
		fid := mesos.FrameworkID{Value: fw.id}
		e.FrameworkID = &fid
		execCopy = &e
		if fw.executors[aid] == nil {
			fw.executors[aid] = map[string]mesos.ExecutorInfo{}
		}
		fw.executors[aid][e.ExecutorID.Value] = e
		if ag.executors[fw.id] == nil {
			ag.executors[fw.id] = map[string]mesos.ExecutorInfo{}
		}
		ag.executors[fw.id][e.ExecutorID.Value] = e
	}
	for i := range tasks {
		t := tasks[i]
		state := mesos.TASK_STAGING
		task := &mesos.Task{
			Name: t.Name, TaskID: t.TaskID, FrameworkID: mesos.FrameworkID{Value: fw.id},
			AgentID: t.AgentID, State: &state, Resources: t.Resources, Labels: t.Labels,
			Discovery: t.Discovery, Container: t.Container, HealthCheck: t.HealthCheck, KillPolicy: t.KillPolicy,
		}
		if execCopy != nil {
			eid := execCopy.ExecutorID
			task.ExecutorID = &eid
		}
		fw.tasks[t.TaskID.Value] = task
		m.publishLocked(&operator.Event{Type: operator.Event_TASK_ADDED, TaskAdded: &operator.Event_TaskAdded{Task: *task}})
	}
	if !ag.unreachable {
		info := fw.info
		if groupExec != nil {
			tg := mesos.TaskGroupInfo{Tasks: tasks}
			ag.conn.RunTask(info, execCopy, nil, &tg)
		} else {
			t := tasks[0]
			ag.conn.RunTask(info, execCopy, &t, nil)
		}
	}
	klog.V(2).InfoS("Launching tasks", "framework", fw.id, "agent", aid, "count", len(tasks), "role", role)
	return available.Minus(need...)
}

// compatibleExecutor is the real master's test of a task's ExecutorInfo
// against the running executor with the same id: equal in every field, the
// resources compared as resources (order and splitting do not matter,
// allocation and reservation do).
func compatibleExecutor(running, asked mesos.ExecutorInfo, fwID string) bool {
	fid := mesos.FrameworkID{Value: fwID}
	if asked.FrameworkID == nil {
		asked.FrameworkID = &fid
	}
	if running.FrameworkID == nil {
		running.FrameworkID = &fid
	}
	ra, rb := running.Resources, asked.Resources
	running.Resources, asked.Resources = nil, nil
	if !running.Equal(&asked) {
		return false
	}
	return sameResources(ra, rb)
}

func sameResources(a, b []mesos.Resource) bool {
	byRole := func(rs []mesos.Resource) map[string][]mesos.Resource {
		out := map[string][]mesos.Resource{}
		for _, r := range rs {
			role := ""
			if ai := r.GetAllocationInfo(); ai != nil {
				role = ai.GetRole()
			}
			out[role] = append(out[role], r)
		}
		return out
	}
	ma, mb := byRole(a), byRole(b)
	if len(ma) != len(mb) {
		return false
	}
	for role, ra := range ma {
		x, y := internalFormat(ra), internalFormat(mb[role])
		if !resources.ContainsAll(x, y) || !resources.ContainsAll(y, x) {
			return false
		}
	}
	return true
}

func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }
