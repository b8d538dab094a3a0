package cluster

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// SampleManifest is the two-tier sample `make up` runs (manifests/examples).
const SampleManifest = "examples/hello.yaml"

// SampleSelector selects the sample's back tier's pods.
const SampleSelector = "app=hello"

// SampleFrontend is the sample's front tier: its Deployment and NodePort
// Service, which calls the back tier by its Service name.
const SampleFrontend = "frontend"

// masterTasks are the live tasks of /master/state, by pod uid (the task
// of its launch attempt).
func masterTasks(ctx context.Context, masterURL string) (map[string]string, error) {
	var st struct {
		Frameworks []struct {
			Tasks []struct {
				ID    string `json:"id"`
				State string `json:"state"`
			} `json:"tasks"`
		} `json:"frameworks"`
	}
	if err := getJSON(ctx, http.DefaultClient, masterURL+"/master/state", &st); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, f := range st.Frameworks {
		for _, t := range f.Tasks {
			out[string(taskinfo.PodUID(t.ID))] = t.State
		}
	}
	return out, nil
}

// waitNodes waits until the broker has mirrored every agent as a Node.
func (cl *Cluster) waitNodes(ctx context.Context) error {
	cs, err := cl.Client()
	if err != nil {
		return err
	}
	var missing []string
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		missing = missing[:0]
		for _, n := range cl.AgentNodes {
			if _, err := cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{}); err != nil {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for the broker to mirror the agents as Nodes (missing %v; see %s): %w",
			missing, filepath.Join(cl.Config.StateDir, "logs", "k8sm-broker.log"), err)
	}
	return nil
}

// runSample applies the two-tier sample and waits until its pods run
// through Mesos (waitThroughMesos).
//
// It is applied once: a later `make up` leaves it as the user made it
// (scaled, edited or deleted) and does not wait for it.
func (cl *Cluster) runSample(ctx context.Context) error {
	applied := filepath.Join(cl.Config.StateDir, "sample-applied")
	if _, err := os.Stat(applied); err == nil {
		return nil
	}
	if err := cl.Config.applyManifest(ctx, SampleManifest); err != nil {
		return err
	}
	for _, d := range []struct{ name, selector string }{{"hello", SampleSelector}, {SampleFrontend, "app=" + SampleFrontend}} {
		if err := cl.waitThroughMesos(ctx, "default", d.name, d.selector); err != nil {
			return fmt.Errorf("the sample Deployment %s (manifests/%s) did not run through Mesos: %w", d.name, SampleManifest, err)
		}
	}
	// Until it ran once, a new `make up` applies it again and waits.
	return os.WriteFile(applied, []byte(SampleManifest+"\n"), 0o644)
}

// waitThroughMesos waits until every pod of the Deployment ns/name
// (selected by selector) runs through Mesos: Running and Ready, and its
// task (pod.<uid>) TASK_RUNNING at the master.
func (cl *Cluster) waitThroughMesos(ctx context.Context, ns, name, selector string) error {
	cs, err := cl.Client()
	if err != nil {
		return err
	}
	var last string
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		tasks, err := masterTasks(ctx, cl.MesosMasterURL)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		var states []string
		running := 0
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				continue
			}
			task := tasks[string(p.UID)]
			states = append(states, fmt.Sprintf("%s: %s on %q, task %s", p.Name, p.Status.Phase, p.Spec.NodeName, orNone(task)))
			if p.Status.Phase == corev1.PodRunning && podReady(&p) && task == "TASK_RUNNING" {
				running++
			}
		}
		last = strings.Join(states, "; ")
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || d.Spec.Replicas == nil {
			return false, nil
		}
		return running == int(*d.Spec.Replicas) && running == len(states), nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w (logs in %s)", last, err, filepath.Join(cl.Config.StateDir, "logs"))
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
