package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"syscall"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/executor"
	"github.com/k8sm/k8sm/executor/agentconn"
)

// fakeHost records what the executor does to its host.
type fakeHost struct {
	saved     map[string]string
	unmounted []string
	restored  map[string]string
	slept     time.Duration
	// proxyLeftovers are the dirs whose kube-proxy leftovers were removed.
	proxyLeftovers []string
}

func (h *fakeHost) SaveTunables(klog.Logger) (map[string]string, error) { return h.saved, nil }
func (h *fakeHost) RestoreTunables(_ klog.Logger, saved map[string]string) {
	h.restored = saved
}
func (h *fakeHost) UnmountUnder(dir string) error {
	h.unmounted = append(h.unmounted, dir)
	return nil
}
func (h *fakeHost) Sleep(d time.Duration) { h.slept += d }
func (h *fakeHost) RemoveProxyLeftovers(_ context.Context, dir string) error {
	h.proxyLeftovers = append(h.proxyLeftovers, dir)
	return nil
}

// TestLeaveHost: on its final exit the executor unmounts under its root
// dir, retries removing the pods' cgroups while the kubelet's housekeeping
// catches up, and gives the kernel settings back.
func TestLeaveHost(t *testing.T) {
	h := &fakeHost{}
	c := &Config{Options: &Options{RootDir: "/var/lib/k8sm/kubelet"}, host: h}
	tunables := map[string]string{"vm/overcommit_memory": "0"}
	tries := 0
	c.leaveHost(klog.Background(), func() error {
		tries++
		if tries < 4 {
			return errors.New("device or resource busy")
		}
		return nil
	}, tunables)
	if !reflect.DeepEqual(h.unmounted, []string{"/var/lib/k8sm/kubelet"}) {
		t.Errorf("unmounted %v", h.unmounted)
	}
	if tries != 4 || h.slept != 3*500*time.Millisecond {
		t.Errorf("cgroups removed after %d tries, %s waited; want 4 tries", tries, h.slept)
	}
	if !reflect.DeepEqual(h.restored, tunables) {
		t.Errorf("restored %v, want %v", h.restored, tunables)
	}

	// Cgroups that never go: it gives up after a while, and still restores.
	h = &fakeHost{}
	c.host = h
	tries = 0
	c.leaveHost(klog.Background(), func() error { tries++; return errors.New("busy") }, tunables)
	if tries != 21 || h.restored == nil {
		t.Errorf("%d tries, restored %v; want 21 and the settings restored", tries, h.restored)
	}
}

// TestReexec: an in-place restart runs the same binary, resolved as the
// agent started it, with the same arguments and environment.
func TestReexec(t *testing.T) {
	var got []any
	c := &Config{exec: func(bin string, argv, env []string) error {
		got = []any{bin, argv, env}
		return nil
	}}
	args := []string{"/sandbox/k8sm-executor", "--kubeconfig=kc"}
	environ := []string{"MESOS_AGENT_ENDPOINT=127.0.0.1:5051"}
	if err := c.reexec(klog.Background(), args, environ); err != nil {
		t.Fatal(err)
	}
	if want := []any{"/sandbox/k8sm-executor", args, environ}; !reflect.DeepEqual(got, want) {
		t.Errorf("exec %v, want %v", got, want)
	}

	c.exec = func(string, []string, []string) error { return syscall.ENOENT }
	if err := c.reexec(klog.Background(), args, environ); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("failed exec: %v, want it to say why", err)
	}
}

func TestBinary(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	lookPath := func(name string) (string, error) {
		if name == "k8sm-executor" {
			return "/usr/local/bin/k8sm-executor", nil
		}
		return "", errors.New("not found")
	}
	for argv0, want := range map[string]string{
		"/opt/k8sm/k8sm-executor": "/opt/k8sm/k8sm-executor",
		"k8sm-executor":           "/usr/local/bin/k8sm-executor",     // from PATH
		"./k8sm-executor":         filepath.Join(wd, "k8sm-executor"), // fetched into the sandbox
	} {
		if got := binary(argv0, lookPath); got != want {
			t.Errorf("binary(%q) = %q, want %q", argv0, got, want)
		}
	}
}

func TestExitCode(t *testing.T) {
	for _, c := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{fmt.Errorf("%w: %w", context.Canceled, errors.New("signal terminated")), 0},
		{fmt.Errorf("subscribing: %w", agentconn.ErrAgentGone), 1},
		{errors.New("kubelet failed"), 1},
	} {
		if got := exitCode(klog.Background(), c.err); got != c.want {
			t.Errorf("exitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
}

// TestMainRefusesBadFlagsAndEnvironment: exit code 2 and a message, before
// anything starts.
func TestMainRefusesBadFlagsAndEnvironment(t *testing.T) {
	var stderr bytes.Buffer
	if got := Main([]string{"k8sm-executor", "--bind-timeout=soon"}, env(nil), nil, &stderr); got != 2 || stderr.String() == "" {
		t.Errorf("bad flag: exit %d, stderr %q", got, stderr.String())
	}
	if got := Main([]string{"k8sm-executor"}, env(nil), nil, &stderr); got != 2 {
		t.Errorf("outside an agent: exit %d, want 2", got)
	}
}

// TestRunLeavesTheHostOnlyOnAFinalExit: an in-place restart leaves the
// mounts, cgroups and settings to the next process, which adopts the pods;
// any other end gives them back.
func TestRunLeavesTheHostOnlyOnAFinalExit(t *testing.T) {
	for _, c := range []struct {
		ran     error
		cleaned bool
	}{
		{executor.ErrRestart, false},
		{nil, true},
		{agentconn.ErrAgentGone, true},
	} {
		h := &fakeHost{saved: map[string]string{"kernel/panic": "0"}}
		cfg := &Config{Options: NewOptions(), host: h, runExecutor: func(context.Context, executor.Options) error { return c.ran }}
		err := cfg.Run(context.Background(), nil)
		if !errors.Is(err, c.ran) && (err != nil || c.ran != nil) {
			t.Errorf("Run = %v, want %v", err, c.ran)
		}
		if cleaned := len(h.unmounted) > 0 && h.restored != nil; cleaned != c.cleaned {
			t.Errorf("executor ended with %v: host cleaned %v, want %v", c.ran, cleaned, c.cleaned)
		}
		// At every start, before the kubelet: a killed executor's
		// kube-proxy may have left rules (proxy.RemoveLeftovers).
		if want := []string{filepath.Join(cfg.Options.RootDir, "kube-proxy")}; !slices.Equal(h.proxyLeftovers, want) {
			t.Errorf("kube-proxy leftovers removed in %v at start, want %v", h.proxyLeftovers, want)
		}
	}
}
