// Package state renders Mesos objects the way the real /state endpoints do
// (snake_case keys, resources as a name→value object, tasks with statuses),
// shared by the master's and the agent's read-only endpoints.
package state

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
)

// Object is a JSON object of a state endpoint.
type Object = map[string]any

// Resources renders resources as {"cpus":4,"mem":1024,"ports":"[31000-32000]"}.
func Resources(rs []mesos.Resource) Object {
	out := Object{"cpus": 0.0, "mem": 0.0, "disk": 0.0, "gpus": 0.0}
	ranges := map[string][]string{}
	for _, r := range rs {
		switch {
		case r.Scalar != nil:
			v, _ := out[r.Name].(float64)
			out[r.Name] = v + r.Scalar.Value
		case r.Ranges != nil:
			for _, rg := range r.Ranges.Range {
				ranges[r.Name] = append(ranges[r.Name], fmt.Sprintf("%d-%d", rg.Begin, rg.End))
			}
		case r.Set != nil:
			out[r.Name] = "{" + strings.Join(r.Set.Item, ", ") + "}"
		}
	}
	for name, rgs := range ranges {
		sort.Strings(rgs)
		out[name] = "[" + strings.Join(rgs, ", ") + "]"
	}
	return out
}

// Attributes renders attributes as {"rack":"r1"}.
func Attributes(as []mesos.Attribute) Object {
	out := Object{}
	for _, a := range as {
		switch {
		case a.Text != nil:
			out[a.Name] = a.Text.Value
		case a.Scalar != nil:
			out[a.Name] = a.Scalar.Value
		case a.Ranges != nil:
			var s []string
			for _, r := range a.Ranges.Range {
				s = append(s, fmt.Sprintf("%d-%d", r.Begin, r.End))
			}
			out[a.Name] = "[" + strings.Join(s, ", ") + "]"
		case a.Set != nil:
			out[a.Name] = "{" + strings.Join(a.Set.Item, ", ") + "}"
		}
	}
	return out
}

// Task renders a task.
func Task(t mesos.Task) Object {
	statuses := []Object{}
	for _, s := range t.Statuses {
		o := Object{"state": s.GetState().String(), "timestamp": s.GetTimestamp()}
		if s.ContainerStatus != nil {
			o["container_status"] = s.ContainerStatus
		}
		statuses = append(statuses, o)
	}
	o := Object{
		"id":           t.TaskID.Value,
		"name":         t.Name,
		"framework_id": t.FrameworkID.Value,
		"executor_id":  t.GetExecutorID().GetValue(),
		"slave_id":     t.AgentID.Value,
		"state":        t.GetState().String(),
		"resources":    Resources(t.Resources),
		"statuses":     statuses,
	}
	if t.Labels != nil {
		o["labels"] = t.Labels.Labels
	}
	// common/http.cpp: the role the task's resources are allocated to.
	if len(t.Resources) > 0 {
		if role := t.Resources[0].GetAllocationInfo().GetRole(); role != "" {
			o["role"] = role
		}
	}
	return o
}

// Serve writes obj as JSON, honouring the ?jsonp= parameter the real endpoints support.
func Serve(w http.ResponseWriter, r *http.Request, obj any) {
	b, err := json.Marshal(obj)
	if err != nil {
		http.Error(w, "rendering state: "+err.Error(), http.StatusInternalServerError)
		return
	}
	if cb := r.URL.Query().Get("jsonp"); cb != "" {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, "%s(%s);", cb, b)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
