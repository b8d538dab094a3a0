package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// Process is one component started by this package: a detached child with
// its own log file and a pid file that outlives the starting program.
type Process struct {
	Name    string
	PidFile string
	LogFile string
	pid     int
	// waited is closed when the child, if we started it in this program,
	// has been reaped; nil for processes adopted from a pid file.
	waited chan struct{}
}

// Pid is the operating-system process id.
func (p *Process) Pid() int { return p.pid }

// startProcess launches argv detached from the caller's session, so that
// `make up` can exit while the cluster keeps running. A marker (the state
// directory) must appear in the command line: pid files are only trusted if
// the process they name still carries it, because pids are reused.
func startProcess(name, stateDir string, env []string, argv ...string) (*Process, error) {
	logDir := filepath.Join(stateDir, "logs")
	pidDir := filepath.Join(stateDir, "pids")
	for _, d := range []string{logDir, pidDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	p := &Process{
		Name:    name,
		PidFile: filepath.Join(pidDir, name+".pid"),
		LogFile: filepath.Join(logDir, name+".log"),
	}
	logf, err := os.OpenFile(p.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log of %s: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, argv[0], err)
	}
	p.pid = cmd.Process.Pid
	p.waited = make(chan struct{})
	go func() { _ = cmd.Wait(); close(p.waited) }()
	if err := os.WriteFile(p.PidFile, []byte(strconv.Itoa(p.pid)+"\n"), 0o644); err != nil {
		_ = p.Stop()
		return nil, fmt.Errorf("writing pid file of %s: %w", name, err)
	}
	klog.V(2).InfoS("Started", "component", name, "pid", p.pid, "log", p.LogFile)
	return p, nil
}

// adoptProcess returns the live process recorded for name in stateDir, or
// nil when there is none (no pid file, a dead pid, or a pid now used by an
// unrelated program).
func adoptProcess(name, stateDir string) *Process {
	p := &Process{
		Name:    name,
		PidFile: filepath.Join(stateDir, "pids", name+".pid"),
		LogFile: filepath.Join(stateDir, "logs", name+".log"),
	}
	b, err := os.ReadFile(p.PidFile)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return nil
	}
	p.pid = pid
	if !p.Alive() || !cmdlineContains(pid, stateDir) {
		return nil
	}
	return p
}

// Alive reports whether the process still exists (a zombie counts as gone).
func (p *Process) Alive() bool {
	if p == nil || p.pid <= 0 {
		return false
	}
	if p.waited != nil {
		select {
		case <-p.waited:
			return false
		default:
			return true
		}
	}
	return pidAlive(p.pid)
}

// pidAlive reports whether pid exists and is not a zombie: processes
// reparented to a PID 1 that does not reap stay zombies for a while.
func pidAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state field follows the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// Stop sends SIGTERM to the process group, waits up to 20 s, then SIGKILLs
// it, and removes the pid file. Stopping a process that is gone is no error.
func (p *Process) Stop() error {
	if p == nil {
		return nil
	}
	defer os.Remove(p.PidFile)
	if !p.Alive() {
		return nil
	}
	_ = syscall.Kill(-p.pid, syscall.SIGTERM)
	_ = syscall.Kill(p.pid, syscall.SIGTERM)
	if p.waitGone(20 * time.Second) {
		return nil
	}
	klog.InfoS("Process did not stop on SIGTERM; killing it", "component", p.Name, "pid", p.pid)
	_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	if p.waitGone(10 * time.Second) {
		return nil
	}
	return fmt.Errorf("%s (pid %d) survived SIGKILL", p.Name, p.pid)
}

func (p *Process) waitGone(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !p.Alive()
}

// tail returns the last lines of the process's log, for error messages.
func (p *Process) tail(n int) string {
	b, err := os.ReadFile(p.LogFile)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func cmdlineContains(pid int, marker string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), marker)
}

// errNotReady is what a health probe returns while a component starts.
var errNotReady = errors.New("not ready")

// waitHealthy polls probe until it succeeds, the process dies, or the
// timeout passes; the error then carries the end of the component's log,
// which is where the reason usually is.
func waitHealthy(ctx context.Context, p *Process, timeout time.Duration, probe func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		last = probe(pctx)
		pcancel()
		if last == nil {
			return nil
		}
		if !p.Alive() {
			return fmt.Errorf("%s exited while starting (log %s):\n%s", p.Name, p.LogFile, p.tail(15))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not healthy after %s: %v (log %s):\n%s", p.Name, timeout, last, p.LogFile, p.tail(15))
		case <-time.After(200 * time.Millisecond):
		}
	}
}
