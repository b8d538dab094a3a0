package signals

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestHelperStuckShutdown is the child process of TestSecondSignalExits:
// a program whose shutdown never finishes.
func TestHelperStuckShutdown(t *testing.T) {
	if os.Getenv("K8SM_SIGNALS_HELPER") != "1" {
		t.Skip("helper process of TestSecondSignalExits")
	}
	ctx := Context()
	fmt.Println("ready")
	<-ctx.Done()
	fmt.Println("shutting down")
	select {} // stuck
}

// TestSecondSignalExits: SIGTERM cancels the context; a second SIGTERM
// ends a shutdown that is stuck, with status ExitCode.
func TestSecondSignalExits(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperStuckShutdown$", "-test.v")
	cmd.Env = append(os.Environ(), "K8SM_SIGNALS_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// A deadline on a broken handler, not a measurement.
	kill := time.AfterFunc(time.Minute, func() { _ = cmd.Process.Kill() })
	defer kill.Stop()
	lines := bufio.NewScanner(out)
	waitFor := func(want string) {
		t.Helper()
		for lines.Scan() {
			if strings.TrimSpace(lines.Text()) == want {
				return
			}
		}
		t.Fatalf("the helper never printed %q", want)
	}
	waitFor("ready")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitFor("shutting down")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		for lines.Scan() {
		}
	}()
	err = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != ExitCode {
		t.Fatalf("after a second SIGTERM the stuck process ended with %v (exit code %d), want exit code %d", err, code, ExitCode)
	}
}
