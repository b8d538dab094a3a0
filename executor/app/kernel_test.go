package app

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/k8sm/k8sm/executor"
	"github.com/k8sm/k8sm/executor/kernel"
)

// The host's own kernel settings and the kubelet's (pkg/kubelet/cm
// setupKernelTunables), in kernel.Tunables' order.
var (
	hostSettings    = []string{"0", "0", "0", "0", "200", "20000"}
	kubeletSettings = []string{"1", "0", "10", "1", "1000000", "25000000"}
)

func writeSettings(t testing.TB, procSys string, values []string) {
	for i, tun := range kernel.Tunables {
		p := filepath.Join(procSys, tun)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(values[i]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func settings(t *testing.T, procSys string) []string {
	var out []string
	for _, tun := range kernel.Tunables {
		b, err := os.ReadFile(filepath.Join(procSys, tun))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.TrimSpace(string(b)))
	}
	return out
}

// kernelTestRun is an executor whose kubelet changes the kernel settings
// (in a directory standing for /proc/sys) and then runs until end says.
func kernelTestRun(t testing.TB, procSys, file string, end func(ctx context.Context) error) error {
	o := NewOptions()
	o.RootDir = filepath.Join(filepath.Dir(file), "kubelet")
	c := &Config{Options: o, host: realHost{kernel: kernel.Defaults{File: file, ProcSys: procSys}},
		runExecutor: func(ctx context.Context, _ executor.Options) error {
			writeSettings(t, procSys, kubeletSettings)
			return end(ctx)
		}}
	return c.Run(context.Background(), nil)
}

// helperT lets the helper process use writeSettings.
type helperT struct{ testing.TB }

func (helperT) Fatal(args ...any) { fmt.Fprintln(os.Stderr, args...); os.Exit(3) }

func TestMain(m *testing.M) {
	if procSys := os.Getenv("K8SM_TEST_KILLED_EXECUTOR_PROCSYS"); procSys != "" {
		// The executor the test kills: it says when its kubelet changed the
		// settings, then waits for SIGKILL.
		_ = kernelTestRun(helperT{}, procSys, os.Getenv("K8SM_TEST_KILLED_EXECUTOR_FILE"), func(context.Context) error {
			fmt.Println("kubelet running")
			select {}
		})
		os.Exit(4)
	}
	os.Exit(m.Run())
}

// TestKernelSettingsRestoredAfterSIGKILL: an executor killed with SIGKILL
// never gives the host back the kernel settings its kubelet changed. The
// next executor on the host used to take the changed settings for the
// host's own and "restore" those on its exit, so the host kept the
// kubelet's for ever. Now the host's own are kept in a file until a clean
// exit: the next executor restores them at its start, and again at its exit.
func TestKernelSettingsRestoredAfterSIGKILL(t *testing.T) {
	dir := t.TempDir()
	procSys, file := filepath.Join(dir, "proc-sys"), filepath.Join(dir, "kernel-defaults.json")
	writeSettings(t, procSys, hostSettings)

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "K8SM_TEST_KILLED_EXECUTOR_PROCSYS="+procSys, "K8SM_TEST_KILLED_EXECUTOR_FILE="+file)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "kubelet running" {
				ready <- true
			}
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("the executor ended before its kubelet ran")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the executor's kubelet did not run")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if got := settings(t, procSys); !equal(got, kubeletSettings) {
		t.Fatalf("after SIGKILL the settings are %v, want the kubelet's %v left behind", got, kubeletSettings)
	}

	// The next executor: restored at its start, before its kubelet runs...
	err = kernelTestRun(t, procSys, file, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	// ...and at its clean exit, after its kubelet changed them again.
	if got := settings(t, procSys); !equal(got, hostSettings) {
		t.Errorf("after the next executor's clean exit the settings are %v, want the host's own %v", got, hostSettings)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the kept settings %s remain after a clean exit (%v)", file, err)
	}
}

func equal(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }
