//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k8sm/k8sm/pkg/taskinfo"
	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// The attacks of issue 17, each refused. Those a tenant or a process on the
// pod network can make against a running cluster are made here, against the
// one the suite shares; the others need what a live cluster cannot give a
// test (a second CA, a registering agent, a killed host) and are made by
// the test named, which succeeded against the code before the defence.
//
//	attack                                                      refused by, tested in
//	Broker API: plaintext / certificate-less / other-identity   mutual TLS + per-call authorization: here (plaintext
//	  client kills, unreserves, reserves, watches without end     Kill) and test/integration TestBrokerAPIAttacks
//	k8sm.io/host-ports maps an agent port Mesos did not allocate  executor: executor/hostports_test.go (TestHostPort*); here
//	                                                              a pending pod that sets it is refused
//	a Mesos agent registering as an existing worker takes its Node broker/nodes/ownership_test.go, admission policy in
//	                                                              manifests (rbac_test.go)
//	broker RBAC: Leases in any namespace, updates of any Node     manifests/rbac_test.go; here: the broker's user may not
//	                                                              write kube-system's Leases
//	broker RBAC: pod patch (its finalizer) rewrites any pod       admission policy k8sm-broker-pod-writes: here
//	ZooKeeper: anyone deletes the framework id, blocks elections  digest auth, owner-only ACLs: here (make up gives the
//	                                                              broker credentials) and broker/zk/auth_test.go
//	Mesos framework credentials in cleartext, never checked       HTTP basic auth over https: broker/mesos/auth_test.go,
//	                                                              hack/mesos-sim/auth_test.go
//	a tenant draws from any Mesos role the framework holds        role policy: here, plugin/mesosoffers/rolepolicy_test.go,
//	                                                              broker/grpcserver/rolepolicy_test.go
//	a misspelt or forged k8sm.io/ annotation is ignored           here, pkg/podresources TestAnnotationsValidated
//	pod specs (literal env values) readable in the Mesos sandbox  here, executor/sandbox_test.go
//	kernel settings left changed after a crash                    executor/app TestKernelSettingsRestoredAfterSIGKILL
//	the executor binary fetched without a checksum                sha256 checked before it runs: hack/mesos-sim/fetch_test.go
//	                                                              TestCorruptExecutorDownloadIsNotRun
func (e *k8smEnv) attacks(t *testing.T, ns string) {
	t.Run("broker-api-plaintext-kill", func(t *testing.T) {
		conn, err := grpc.NewClient(e.cfg.BrokerAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		_, err = brokerv1.NewBrokerClient(conn).Kill(ctx, &brokerv1.KillRequest{Pod: &brokerv1.PodRef{Uid: "any", Namespace: ns, Name: "victim"}})
		if code := status.Code(err); code != codes.Unavailable {
			t.Errorf("a plaintext client's Kill: %v, want it refused in the TLS handshake (Unavailable)", err)
		}
	})

	t.Run("zookeeper-anonymous-delete-framework-id", func(t *testing.T) {
		conn, _, err := zk.Connect([]string{e.cfg.ZooKeeperAddr()}, 10*time.Second, zk.WithLogInfo(false))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		const node = "/k8sm/framework-id"
		if _, st, err := conn.Exists(node); err != nil || st == nil {
			t.Fatalf("%s: %v (exists: %v), want the broker's framework id there", node, err, st != nil)
		}
		if err := conn.Delete(node, -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("an unauthenticated client deleting %s: %v, want %v", node, err, zk.ErrNoAuth)
		}
		if _, err := conn.Create("/k8sm/leader/x", nil, 0, zk.WorldACL(zk.PermAll)); err == nil || errors.Is(err, zk.ErrNoNode) {
			t.Errorf("an unauthenticated client creating under /k8sm/leader: %v, want it refused", err)
		}
	})

	t.Run("broker-rbac-kube-system-leases", func(t *testing.T) {
		out, _ := e.kubectlErr("auth", "can-i", "update", "leases.coordination.k8s.io", "-n", "kube-system", "--as=system:k8sm-broker")
		if strings.TrimSpace(out) != "no" {
			t.Errorf("the broker's user may update kube-system's Leases (the schedulers' leader election): %q", out)
		}
	})

	// The broker may patch pods (to remove its k8sm.io/task finalizer, which
	// every mesos-scheduler pod gets when created), and nothing else there.
	t.Run("broker-pod-writes", func(t *testing.T) {
		p := e.createPod(t, ns, "broker-pod-writes", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10")} // never placed
		})
		if !slices.Contains(p.Finalizers, taskinfo.TaskFinalizer) {
			t.Errorf("a mesos-scheduler pod was created without the %s finalizer (manifests/task-finalizer.yaml): %v", taskinfo.TaskFinalizer, p.Finalizers)
		}
		for _, patch := range []string{
			`{"metadata":{"labels":{"app":"hijacked"}}}`,
			`{"metadata":{"finalizers":["k8sm.io/task","example.com/forged"]}}`,
			`{"spec":{"activeDeadlineSeconds":1}}`,
		} {
			out, err := e.kubectlErr("--as=system:k8sm-broker", "-n", ns, "patch", "pod", p.Name, "--type=merge", "-p", patch)
			if err == nil || !strings.Contains(out, "k8sm-broker may only remove the k8sm.io/task finalizer") {
				t.Errorf("the broker's user patched pod %s with %s: %v: %s", p.Name, patch, err, out)
			}
		}
		// What it may do: a pod being deleted that never ran is let go.
		if err := e.cs.CoreV1().Pods(ns).Delete(e.ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.eventually(t, time.Minute, "the broker to let pod "+p.Name+" go", func() (bool, string) {
			q, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, p.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, ""
			}
			if err != nil {
				return false, err.Error()
			}
			return false, fmt.Sprintf("finalizers %v", q.Finalizers)
		})
	})

	// A tenant's pods whose k8sm.io/ annotations overreach stay Pending,
	// their event naming what is wrong.
	for _, a := range []struct {
		name, key, value, want string
	}{
		{"role-outside-policy", "k8sm.io/roles", "analytics", `denied by the role policy: role policy ` + filepath.Join(e.cfg.StateDir, "role-policy.yaml") + ` does not let namespace "` + ns + `" use Mesos role analytics`},
		{"misspelt-annotation", "k8sm.io/role", "analytics", "annotation k8sm.io/role: k8sm reads no such annotation on pods"},
		{"forged-host-ports", "k8sm.io/host-ports", `[{"container":"web","containerPort":8080,"hostPort":5051}]`, "annotation k8sm.io/host-ports: k8sm writes it when it places a pod"},
	} {
		t.Run(a.name, func(t *testing.T) {
			e.createPod(t, ns, a.name, func(p *corev1.Pod) { p.Annotations = map[string]string{a.key: a.value} })
			e.eventually(t, time.Minute, "the scheduler to refuse pod "+a.name, func() (bool, string) {
				evs := e.events(t, ns, a.name)
				for _, ev := range evs {
					if strings.HasPrefix(ev, "FailedScheduling: ") && strings.Contains(ev, a.want) {
						return true, ""
					}
				}
				return false, strings.Join(evs, "; ")
			})
			p, err := e.cs.CoreV1().Pods(ns).Get(e.ctx, a.name, metav1.GetOptions{})
			if err != nil || p.Spec.NodeName != "" {
				t.Errorf("pod %s: %v, bound to %q; want it Pending", a.name, err, p.Spec.NodeName)
			}
		})
	}

	t.Run("secret-in-sandbox", func(t *testing.T) {
		const literal, fromSecret = "e2e-hunter2-literal", "e2e-hunter2-from-secret"
		if _, err := e.cs.CoreV1().Secrets(ns).Create(e.ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"},
			StringData: map[string]string{"password": fromSecret}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		e.createPod(t, ns, "db-client", func(p *corev1.Pod) {
			p.Labels = map[string]string{"e2e": "db-client"}
			c := &p.Spec.Containers[0]
			c.Env = append(c.Env, corev1.EnvVar{Name: "DB_PASSWORD", Value: literal},
				corev1.EnvVar{Name: "DB_PASSWORD_2", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: "db"}, Key: "password"}}})
		})
		e.waitRunning(t, ns, "e2e=db-client", 1, 2*time.Minute)
		// Every file of every agent's sandboxes: what the agents' /files
		// endpoint serves.
		sandboxes, _ := filepath.Glob(filepath.Join(e.cfg.StateDir, "a*", "mesos", "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*"))
		files := 0
		for _, dir := range sandboxes {
			_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
				if err != nil || !d.Type().IsRegular() {
					return nil
				}
				b, err := os.ReadFile(path)
				if err != nil {
					return nil
				}
				files++
				for _, s := range []string{literal, fromSecret} {
					if strings.Contains(string(b), s) {
						t.Errorf("the sandbox file %s holds the secret %q", path, s)
					}
				}
				return nil
			})
		}
		if files == 0 {
			t.Errorf("no file in the agents' sandboxes (%d sandboxes): nothing was checked", len(sandboxes))
		}
	})
}
