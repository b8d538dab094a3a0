package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestPauseFiresOnce: without a directory no point fires, whatever files
// exist; with one, a pause holds the caller until its file goes, and fires
// once.
func TestPauseFiresOnce(t *testing.T) {
	d := t.TempDir()
	if err := os.WriteFile(filepath.Join(d, "p"), []byte("pause\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	Hit("p") // not enabled: returns at once
	if _, err := os.Stat(filepath.Join(d, "p")); err != nil {
		t.Fatalf("a point fired while failpoints were off: %v", err)
	}
	Enable(d)
	t.Cleanup(func() { dir.Store(nil) })
	done := make(chan struct{})
	go func() { Hit("p"); close(done) }()
	paused := filepath.Join(d, "p.paused")
	for {
		if _, err := os.Stat(paused); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatal("the point returned without pausing")
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case <-done:
		t.Fatal("the point returned while its .paused file exists")
	case <-time.After(200 * time.Millisecond):
	}
	if err := os.Remove(paused); err != nil {
		t.Fatal(err)
	}
	<-done
	Hit("p") // fired once: the file is gone
	if _, err := os.Stat(paused); err == nil {
		t.Error("the point fired twice")
	}
}

// TestCrashKillsTheProcess: a crash point SIGKILLs the process that reaches
// it (this test binary, run again as a child), and only once it is armed.
func TestCrashKillsTheProcess(t *testing.T) {
	if d := os.Getenv("FAILPOINT_TEST_CHILD"); d != "" {
		Enable(d)
		Hit("c")
		os.Exit(0) // not reached when armed
	}
	d := t.TempDir()
	run := func() error {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKillsTheProcess$")
		cmd.Env = append(os.Environ(), "FAILPOINT_TEST_CHILD="+d)
		return cmd.Run()
	}
	if err := run(); err != nil {
		t.Fatalf("unarmed, the child failed: %v", err)
	}
	if err := os.WriteFile(filepath.Join(d, "c"), []byte("crash"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("armed, the child ended with %v, want SIGKILL", err)
	}
	if err := run(); err != nil {
		t.Fatalf("after the point fired once, the child failed: %v", err)
	}
}
