package invariants

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
)

// recorded is a real cluster's state, as the e2e suite's bring-up ran it
// (mesos-sim, two agents with the k8sm executor, broker, scheduler) during
// the host-ports scenario: pod "fixed" on host port 33949 of k8sm-agent-1,
// pod "wild" with a wildcard port given 33950 of k8sm-agent-2, 20 completed
// tasks of earlier scenarios.
func recorded(t *testing.T) (*MasterState, []v1.Pod) {
	t.Helper()
	b, err := os.ReadFile("testdata/recorded-master-state.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := ParseMasterState(b)
	if err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile("testdata/recorded-pods.json")
	if err != nil {
		t.Fatal(err)
	}
	var pods v1.PodList
	if err := json.Unmarshal(b, &pods); err != nil {
		t.Fatal(err)
	}
	return st, pods.Items
}

func TestRecordedClusterHoldsEveryInvariant(t *testing.T) {
	st, pods := recorded(t)
	if vs := Check(st, pods, k8smOpts); len(vs) != 0 {
		t.Fatalf("the recorded cluster reported violations:\n%v", vs)
	}
}

func TestRecordedClusterBroken(t *testing.T) {
	podNamed := func(pods []v1.Pod, name string) *v1.Pod {
		for i := range pods {
			if pods[i].Name == name {
				return &pods[i]
			}
		}
		t.Fatalf("no pod %s in the recording", name)
		return nil
	}
	taskOf := func(st *MasterState, p *v1.Pod) Task {
		for _, tk := range st.Frameworks[0].Tasks {
			if PodUID(tk) == string(p.UID) {
				return tk
			}
		}
		t.Fatalf("no task of pod %s in the recording", p.Name)
		return Task{}
	}
	cases := []struct {
		name   string
		break_ func(st *MasterState, pods []v1.Pod) []v1.Pod
		want   []string
	}{
		{
			// The same pod launched again on the other agent, whose
			// master counts it: only the doubling is wrong.
			name: "wild pod launched on both agents",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				tk := taskOf(st, podNamed(pods, "wild"))
				other := st.Slaves[0].ID
				if tk.SlaveID == other {
					other = st.Slaves[1].ID
				}
				tk.SlaveID = other
				st.Frameworks[0].Tasks = append(st.Frameworks[0].Tasks, tk)
				for i := range st.Slaves {
					if st.Slaves[i].ID == other {
						st.Slaves[i].UsedResources = st.Slaves[i].UsedResources.Add(tk.Resources)
					}
				}
				return pods
			},
			want: []string{RuleOneTaskPerPod, RuleRunningPodTask, RuleTaskHasPod},
		},
		{
			name: "fixed pod ran once before, under the same task id",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				tk := taskOf(st, podNamed(pods, "fixed"))
				tk.State = "TASK_KILLED"
				st.Frameworks[0].CompletedTasks = append(st.Frameworks[0].CompletedTasks, tk)
				return pods
			},
			want: []string{RuleOneTaskPerPod},
		},
		{
			name: "pods deleted, tasks left running",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				return nil
			},
			want: []string{RuleTaskHasPod},
		},
		{
			name: "the master forgot an executor's resources",
			break_: func(st *MasterState, pods []v1.Pod) []v1.Pod {
				st.Slaves[1].UsedResources.CPUs -= 0.25
				return pods
			},
			want: []string{RuleAgentUsed},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, pods := recorded(t)
			vs := Check(st, c.break_(st, pods), k8smOpts)
			want := slices.Sorted(slices.Values(c.want))
			if got := rules(vs); !slices.Equal(got, want) {
				t.Fatalf("rules broken: %q, want %q\n%v", got, want, vs)
			}
			for _, v := range vs {
				if !strings.Contains(v.String(), "pod") && !strings.Contains(v.String(), "agent") {
					t.Errorf("violation names no pod, task or agent: %s", v)
				}
			}
		})
	}
}
