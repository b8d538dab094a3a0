//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// serviceAnswersAfterAgentGone bounds how long a Service whose every
// backend ran on a lost agent may stay without an answer: the pods' tasks
// end TASK_GONE_BY_OPERATOR, the ReplicaSet replaces them, k8sm places the
// replacements on another agent, and kube-proxy sends the Service there.
const serviceAnswersAfterAgentGone = 90 * time.Second

// serviceAgentGone: a client keeps calling a Service by its DNS name while
// the agent running every backend of the Service is lost for good (an
// operator marks it gone, MARK_AGENT_GONE: Mesos ends its tasks
// TASK_GONE_BY_OPERATOR and shuts its executors down). Replacement pods start
// on the other agents and the Service answers again from them within
// serviceAnswersAfterAgentGone. The broker deletes the gone agent's Node, so
// the DaemonSet no longer counts it and its pod there goes.
//
// The lost machine is the suite's spare one (the standby agent, which
// daemonset-agent-joins started): a gone agent never comes back under its
// id, so this scenario runs last and the cluster ends with its two agents.
func (e *k8smEnv) serviceAgentGone(t *testing.T, ns string) {
	start := time.Now()
	ags := e.agents(t)
	spare := e.cfg.Agents // the standby agent's index
	lost := e.cfg.AgentName(spare + 1)
	running := false
	for _, sa := range e.simAgents(t) {
		running = running || (sa.Index == spare && sa.Running)
	}
	if !running { // run on its own (-run), without daemonset-agent-joins
		e.control(t, fmt.Sprintf("agents/%d/start", spare))
	}
	e.eventually(t, 2*time.Minute, "node "+lost+" of the spare agent to be Ready", func() (bool, string) {
		return e.nodeReady(lost), "not Ready"
	})

	if err := e.cl.DeployDNS(e.ctx); err != nil {
		t.Fatal(err)
	}
	defer e.removeDNS(t)
	// The client: a front tier on the first agent calling http://backend/
	// (the Service by name, through the cluster DNS) on every request it
	// gets, reached from here at its host port.
	var port int32
	for p := range ags[0].res.Ports {
		port = max(port, int32(p))
	}
	e.createPod(t, ns, "frontend", func(p *corev1.Pod) {
		p.Labels = map[string]string{"e2e": "frontend"}
		onNode(ags[0].node)(&p.Spec)
		c := &p.Spec.Containers[0]
		c.Args = []string{"--backend=http://backend/"}
		c.Ports = []corev1.ContainerPort{{ContainerPort: 8080, HostPort: port}}
	})
	e.createDaemonSet(t, ns)
	e.createService(t, ns, "backend", corev1.ServiceTypeClusterIP, map[string]string{"app": "backend"})

	// Every backend on the spare agent: the others cordoned meanwhile.
	e.kubectl(t, "uncordon", lost)
	for _, a := range ags {
		e.kubectl(t, "cordon", a.node)
	}
	uncordon := sync.OnceFunc(func() {
		for _, a := range ags {
			if out, err := e.kubectlErr("uncordon", a.node); err != nil {
				t.Errorf("uncordon %s: %v: %s", a.node, err, out)
			}
		}
	})
	defer uncordon()
	e.createDeployment(t, ns, "backend", 2)
	for _, p := range e.waitRunning(t, ns, "app=backend", 2, 2*time.Minute) {
		if p.Spec.NodeName != lost {
			t.Fatalf("backend pod %s runs on %s, want %s (the other agents are cordoned)", p.Name, p.Spec.NodeName, lost)
		}
	}
	before := e.pods(t, ns, "app=backend")
	uncordon()
	e.waitRunning(t, ns, "e2e=frontend", 1, 2*time.Minute)
	e.waitRunning(t, ns, "app=agentd", len(ags)+1, 2*time.Minute)

	url := fmt.Sprintf("http://%s:%d/", e.nodeIP(t, ags[0].node), port)
	e.eventually(t, time.Minute, "the front tier to get the Service's answer from "+lost, func() (bool, string) {
		b, err := httpGet(url)
		return err == nil && strings.Contains(b, "says: hello from") && strings.Contains(b, "on node "+lost+")"), fmt.Sprint(b, err)
	})

	// kube-proxy's rules on the lost machine, which go when its executor
	// exits (shut down by Mesos).
	lostNS := e.cfg.AgentNetNS(spare + 1)
	if len(e.proxyChains(t, lostNS)) == 0 {
		t.Fatalf("no kube-proxy chain in %s while its executor runs", lostNS)
	}

	t.Logf("set up in %s: every backend on %s, the client answered through the Service", time.Since(start).Round(time.Second), lost)

	// The client calls on while the agent goes.
	calls := startCalling(url)
	gone := time.Now()
	e.control(t, fmt.Sprintf("agents/%d/gone", spare))
	e.eventually(t, serviceAnswersAfterAgentGone, "the Service to answer again from another agent", func() (bool, string) {
		at, node, last := calls.answeredAfter(gone, lost)
		if at.IsZero() {
			return false, last
		}
		t.Logf("the Service answered again %s after %s was marked gone (pod on %s); %d of %d calls in between failed",
			at.Sub(gone).Round(100*time.Millisecond), lost, node, calls.failedBetween(gone, at), calls.countBetween(gone, at))
		return true, ""
	})
	calls.stop()

	e.waitTasksEnded(t, uids(before), "TASK_GONE_BY_OPERATOR", time.Minute)
	for _, p := range e.waitRunning(t, ns, "app=backend", 2, time.Minute) {
		if p.Spec.NodeName == lost {
			t.Errorf("backend pod %s runs on %s, which is gone", p.Name, lost)
		}
	}
	// Its Node is deleted, so the DaemonSet no longer counts it.
	e.eventually(t, time.Minute, "node "+lost+" to be deleted", func() (bool, string) {
		_, err := e.cs.CoreV1().Nodes().Get(e.ctx, lost, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	e.eventually(t, time.Minute, "the DaemonSet to run on the remaining agents only", func() (bool, string) {
		ds, err := e.cs.AppsV1().DaemonSets(ns).Get(e.ctx, "agentd", metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		s := ds.Status
		return s.DesiredNumberScheduled == int32(len(ags)) && s.NumberReady == int32(len(ags)), fmt.Sprintf("%+v", s)
	})
	for _, p := range e.pods(t, ns, "app=agentd") {
		// Ended either way: Failed by the broker, or Succeeded as its dying
		// kubelet saw the container exit 0 on SIGTERM (a write that may
		// land after the broker's).
		ended := p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
		if p.Spec.NodeName == lost && !ended && p.DeletionTimestamp == nil {
			t.Errorf("DaemonSet pod %s is %s on %s, whose agent is gone", p.Name, p.Status.Phase, lost)
		}
	}
	e.eventually(t, time.Minute, "kube-proxy's rules in "+lostNS+" to be removed as its executor exits", func() (bool, string) {
		left := e.proxyChains(t, lostNS)
		return len(left) == 0, fmt.Sprint(left)
	})
	t.Logf("checked in %s after the agent was marked gone", time.Since(gone).Round(time.Second))
}

// proxyChains lists kube-proxy's iptables chains in an agent's network
// namespace (not the kubelet's KUBE-FIREWALL, KUBE-KUBELET-CANARY and
// KUBE-IPTABLES-HINT).
func (e *k8smEnv) proxyChains(t *testing.T, netns string) []string {
	t.Helper()
	out, err := exec.CommandContext(e.ctx, "ip", "netns", "exec", netns, "iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save in %s: %v: %s", netns, err, out)
	}
	var chains []string
	for _, l := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(l, ":KUBE-") {
			continue
		}
		name := strings.Fields(l[1:])[0]
		if name != "KUBE-FIREWALL" && name != "KUBE-KUBELET-CANARY" && name != "KUBE-IPTABLES-HINT" {
			chains = append(chains, name)
		}
	}
	return chains
}

// caller calls a URL every 200 ms on a new connection and records each
// outcome.
type caller struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	log  []call
}

type call struct {
	at   time.Time // when the answer (or the failure) came
	ok   bool
	node string // the node of the backend that answered
	body string
}

func startCalling(url string) *caller {
	c := &caller{done: make(chan struct{})}
	client := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-c.done:
				return
			case <-time.After(200 * time.Millisecond):
			}
			var r call
			resp, err := client.Get(url)
			if err != nil {
				r.body = err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				r.body = string(b)
				// The front tier answers 200 either way; the back tier's
				// part says whether the Service answered.
				if _, says, ok := strings.Cut(r.body, "says: hello from"); ok {
					if _, n, ok := strings.Cut(says, "on node "); ok {
						r.ok, r.node = true, strings.TrimSuffix(strings.Fields(n)[0], ")")
					}
				}
			}
			r.at = time.Now()
			c.mu.Lock()
			c.log = append(c.log, r)
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *caller) stop() { close(c.done); c.wg.Wait() }

// answeredAfter is when the first answer after since came from a backend
// on a node other than not (zero if none yet), and the last call's outcome.
func (c *caller) answeredAfter(since time.Time, not string) (time.Time, string, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := "no call yet"
	for _, r := range c.log {
		if r.at.Before(since) {
			continue
		}
		last = strings.TrimSpace(r.body)
		if r.ok && r.node != not {
			return r.at, r.node, ""
		}
	}
	return time.Time{}, "", last
}

func (c *caller) countBetween(from, to time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.log {
		if !r.at.Before(from) && !r.at.After(to) {
			n++
		}
	}
	return n
}

func (c *caller) failedBetween(from, to time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, r := range c.log {
		if !r.at.Before(from) && !r.at.After(to) && !r.ok {
			n++
		}
	}
	return n
}
