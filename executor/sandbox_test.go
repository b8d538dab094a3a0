package executor_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSandboxHoldsNoSecrets: the Mesos sandbox is served by the agent's
// /files endpoint to whoever may browse the framework's sandboxes. The
// executor checkpoints its tasks there; they used to hold the whole pod, so a
// literal env value (and the last-applied annotation repeating it) could be
// read from the sandbox. Now no file of the sandbox holds the value, while a
// restarted executor still runs the pod as the API server has it.
func TestSandboxHoldsNoSecrets(t *testing.T) {
	const literal, fromSecret = "hunter2-literal-password", "hunter2-secret-value"
	e := newEnv(t, 30*time.Second)
	if _, err := e.api.CoreV1().Secrets("default").Create(e.ctx, &v1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db"}, StringData: map[string]string{"password": fromSecret},
		Data: map[string][]byte{"password": []byte(fromSecret)}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := e.pod("db-client", map[string]string{"kubectl.kubernetes.io/last-applied-configuration": `{"env":[{"name":"DB_PASSWORD","value":"` + literal + `"}]}`})
	p.Spec.Containers[0].Env = []v1.EnvVar{
		{Name: "DB_PASSWORD", Value: literal},
		{Name: "DB_PASSWORD_2", ValueFrom: &v1.EnvVarSource{SecretKeyRef: &v1.SecretKeySelector{LocalObjectReference: v1.LocalObjectReference{Name: "db"}, Key: "password"}}},
	}
	// The pod as created, env included (e.pod created it without).
	if err := e.api.CoreV1().Pods("default").Delete(e.ctx, p.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	p.ResourceVersion = ""
	p, err := e.api.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := e.launch(p)
	c := e.mesosEnv()
	r := e.startExecutor(c)
	e.update(id, mesos.TASK_RUNNING)

	// A restart reads the checkpoint back: the pod keeps running as it is.
	r.restartInPlace(t, e.ctx)
	e.startExecutor(c)
	next := e.launch(e.pod("next", nil))
	e.update(next, mesos.TASK_RUNNING)
	if n := e.kube.startsOf(p.UID); n != 1 {
		t.Errorf("the pod was started %d times across the restart", n)
	}
	if got := e.kube.lastHanded(p.UID); got == nil || got.Spec.Containers[0].Env[0].Value != literal {
		t.Errorf("the kubelet was handed %v, want the pod with its env as the API server has it", got)
	}

	sandboxes, _ := filepath.Glob(filepath.Join(e.sim.Agent(0).Config().WorkDir, "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*"))
	if len(sandboxes) == 0 {
		t.Fatal("no sandbox found")
	}
	checkpoints := 0
	for _, dir := range sandboxes {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			if d.Name() == "k8sm-executor.json" {
				checkpoints++
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("reading %s: %v", path, err)
				return nil
			}
			for _, secret := range []string{literal, fromSecret} {
				if strings.Contains(string(b), secret) {
					t.Errorf("the sandbox file %s holds the secret %q", path, secret)
				}
			}
			return nil
		})
	}
	if checkpoints == 0 {
		t.Error("no executor checkpoint in the sandbox: nothing was checked")
	}
}
