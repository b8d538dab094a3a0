package agent

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Executor processes outlive the Agent object that started them (an agent
// "restart" in the same OS process must find its executors still running, as
// with a real agent restart). So their waiting lives here, keyed by pid, and
// any agent incarnation can watch a pid it recovered.
var procs = struct {
	sync.Mutex
	m map[int]*proc
}{m: map[int]*proc{}}

type proc struct {
	done   chan struct{}
	status int
}

func trackProcess(p *os.Process) *proc {
	pr := &proc{done: make(chan struct{})}
	procs.Lock()
	procs.m[p.Pid] = pr
	procs.Unlock()
	go func() {
		st, err := p.Wait()
		if err == nil {
			if ws, ok := st.Sys().(syscall.WaitStatus); ok {
				pr.status = int(ws)
			}
		} else {
			pr.status = -1
		}
		close(pr.done)
	}()
	return pr
}

// watchPid returns a channel closed when pid exits. For our own children it
// uses the reaper above; for others (left by an earlier OS process) it polls.
func watchPid(pid int, stop <-chan struct{}) (<-chan struct{}, func() int) {
	procs.Lock()
	pr := procs.m[pid]
	procs.Unlock()
	if pr != nil {
		return pr.done, func() int { return pr.status }
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			if !alive(pid) {
				close(done)
				return
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return done, func() int { return -1 }
}

func alive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// A zombie is dead for our purposes.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// killGroup signals the executor's whole process group, as the Mesos
// launcher kills the whole container.
func killGroup(pid int, sig syscall.Signal) {
	if pid <= 0 {
		return
	}
	if err := syscall.Kill(-pid, sig); err != nil {
		_ = syscall.Kill(pid, sig)
	}
}
