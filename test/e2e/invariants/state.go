// Package invariants checks k8sm's invariants against what a user can see:
// the pods of the API server and the Mesos master's GET /master/state.
//
//   - every Running pod has exactly one RUNNING task, on the agent of its node;
//   - every pod bound to a node that has not ended has a live task;
//   - every task that has not ended belongs to a live pod bound to that agent;
//   - no pod UID has two tasks (active or completed, in any framework);
//   - the resources the master counts as used on each agent equal what the
//     pods of its tasks ask for, plus the executor's charge on every agent
//     where the k8sm executor runs.
//
// The pods' demands are computed here from their specs, independently of
// pkg/podresources, so that a wrong translation in k8sm is not checked
// against itself.
package invariants

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// MasterState is the part of GET /master/state the checks read, in the real
// master's JSON shape (snake_case, resources as a name → value object).
type MasterState struct {
	Frameworks          []Framework `json:"frameworks"`
	CompletedFrameworks []Framework `json:"completed_frameworks"`
	Slaves              []Slave     `json:"slaves"`
	OrphanTasks         []Task      `json:"orphan_tasks"`
}

// Framework is one entry of frameworks[] or completed_frameworks[].
type Framework struct {
	ID             string     `json:"id"`
	Name           string     `json:"name"`
	Active         bool       `json:"active"`
	Tasks          []Task     `json:"tasks"`
	CompletedTasks []Task     `json:"completed_tasks"`
	Executors      []Executor `json:"executors"`
}

// Task is one Mesos task.
type Task struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	FrameworkID string    `json:"framework_id"`
	ExecutorID  string    `json:"executor_id"`
	SlaveID     string    `json:"slave_id"`
	State       string    `json:"state"`
	Resources   Resources `json:"resources"`
	Labels      []Label   `json:"labels"`
}

// Label is a Mesos label.
type Label struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Executor is one running executor of a framework.
type Executor struct {
	ExecutorID  string    `json:"executor_id"`
	SlaveID     string    `json:"slave_id"`
	FrameworkID string    `json:"framework_id"`
	Resources   Resources `json:"resources"`
}

// Slave is one agent.
type Slave struct {
	ID               string         `json:"id"`
	Hostname         string         `json:"hostname"`
	Active           bool           `json:"active"`
	Resources        Resources      `json:"resources"`
	UsedResources    Resources      `json:"used_resources"`
	OfferedResources Resources      `json:"offered_resources"`
	Attributes       map[string]any `json:"attributes"`
}

// ParseMasterState decodes the body of GET /master/state.
func ParseMasterState(b []byte) (*MasterState, error) {
	var st MasterState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("decoding /master/state: %w", err)
	}
	return &st, nil
}

// terminalStates are the task states after which a task holds nothing.
var terminalStates = map[string]bool{
	"TASK_FINISHED": true, "TASK_FAILED": true, "TASK_KILLED": true, "TASK_LOST": true,
	"TASK_ERROR": true, "TASK_DROPPED": true, "TASK_GONE": true, "TASK_GONE_BY_OPERATOR": true,
	"TASK_UNKNOWN": true,
}

// Terminal reports whether a task state is final.
func Terminal(state string) bool { return terminalStates[state] }

// Resources are scalar resources in Mesos units (cpus, mem and disk in MB,
// gpus) and the ports a task or agent holds.
type Resources struct {
	CPUs, Mem, Disk, GPUs float64
	Ports                 PortSet
}

// UnmarshalJSON reads the state endpoints' form:
// {"cpus":0.5,"mem":64,"disk":0,"gpus":0,"ports":"[31000-31001, 31005-31005]"}.
func (r *Resources) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("decoding resources %s: %w", b, err)
	}
	*r = Resources{}
	for name, v := range m {
		var dst *float64
		switch name {
		case "cpus":
			dst = &r.CPUs
		case "mem":
			dst = &r.Mem
		case "disk":
			dst = &r.Disk
		case "gpus":
			dst = &r.GPUs
		case "ports":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("decoding ports %s: %w", v, err)
			}
			ps, err := ParsePorts(s)
			if err != nil {
				return err
			}
			r.Ports = ps
		}
		if dst != nil {
			if err := json.Unmarshal(v, dst); err != nil {
				return fmt.Errorf("decoding %s %s: %w", name, v, err)
			}
		}
	}
	return nil
}

// Add returns r+o; ports are united.
func (r Resources) Add(o Resources) Resources {
	return Resources{CPUs: r.CPUs + o.CPUs, Mem: r.Mem + o.Mem, Disk: r.Disk + o.Disk, GPUs: r.GPUs + o.GPUs,
		Ports: r.Ports.Union(o.Ports)}
}

// Equal compares with Mesos' own precision (thousandths).
func (r Resources) Equal(o Resources) bool {
	eq := func(a, b float64) bool { return math.Round(a*1000) == math.Round(b*1000) }
	return eq(r.CPUs, o.CPUs) && eq(r.Mem, o.Mem) && eq(r.Disk, o.Disk) && eq(r.GPUs, o.GPUs) && r.Ports.Equal(o.Ports)
}

func (r Resources) String() string {
	f := func(v float64) string { return strconv.FormatFloat(math.Round(v*1000)/1000, 'f', -1, 64) }
	s := fmt.Sprintf("cpus:%s mem:%s disk:%s", f(r.CPUs), f(r.Mem), f(r.Disk))
	if r.GPUs != 0 {
		s += " gpus:" + f(r.GPUs)
	}
	if len(r.Ports) > 0 {
		s += " ports:" + r.Ports.String()
	}
	return s
}

// PortSet is a set of ports.
type PortSet map[uint64]struct{}

// ParsePorts reads "[31000-31001, 31005-31005]".
func ParsePorts(s string) (PortSet, error) {
	ps := PortSet{}
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if strings.TrimSpace(s) == "" {
		return ps, nil
	}
	for _, rg := range strings.Split(s, ",") {
		lo, hi, ok := strings.Cut(strings.TrimSpace(rg), "-")
		if !ok {
			hi = lo
		}
		b, err1 := strconv.ParseUint(lo, 10, 64)
		e, err2 := strconv.ParseUint(hi, 10, 64)
		if err1 != nil || err2 != nil || e < b {
			return nil, fmt.Errorf("bad port range %q in %q", rg, s)
		}
		if e-b > 1<<16 {
			return nil, fmt.Errorf("port range %q is wider than the port space", rg)
		}
		for p := b; p <= e; p++ {
			ps[p] = struct{}{}
		}
	}
	return ps, nil
}

// Union returns the ports of both sets.
func (ps PortSet) Union(o PortSet) PortSet {
	out := PortSet{}
	for p := range ps {
		out[p] = struct{}{}
	}
	for p := range o {
		out[p] = struct{}{}
	}
	return out
}

// Equal reports whether both sets hold the same ports.
func (ps PortSet) Equal(o PortSet) bool {
	if len(ps) != len(o) {
		return false
	}
	for p := range ps {
		if _, ok := o[p]; !ok {
			return false
		}
	}
	return true
}

func (ps PortSet) String() string {
	l := make([]uint64, 0, len(ps))
	for p := range ps {
		l = append(l, p)
	}
	sort.Slice(l, func(i, j int) bool { return l[i] < l[j] })
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < len(l); {
		j := i
		for j+1 < len(l) && l[j+1] == l[j]+1 {
			j++
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%d-%d", l[i], l[j])
		i = j + 1
	}
	b.WriteString("]")
	return b.String()
}
