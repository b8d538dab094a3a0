package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"
)

// child is one task of a default executor: a nested container running the
// task's command in <executor sandbox>/tasks/<task id>.
type child struct {
	task    mesos.TaskInfo
	group   []string // the task ids of its task group
	pid     int
	killing bool
	// killingGroup: killed because another task of its group ended badly.
	killingGroup bool
}

// launchDefaultLocked plays Mesos 1.11's default executor
// (src/launcher/default_executor.cpp) for a task group: each task is
// reported TASK_STARTING, its URIs fetched and its command run, then
// TASK_RUNNING; a task that ends is FINISHED, FAILED ("Command exited with
// status N") or KILLED, and a task that fails or is killed takes the rest
// of its group down. The executor ends when its last task has.
func (a *Agent) launchDefaultLocked(e *executorRun, tasks []mesos.TaskInfo) {
	if e.dir == "" {
		e.dir = a.sandboxDir(e)
	}
	if e.children == nil {
		e.children = map[string]*child{}
	}
	e.state = running
	e.sentTask = true
	var group []string
	for _, t := range tasks {
		group = append(group, t.TaskID.Value)
	}
	for _, t := range tasks {
		c := &child{task: t, group: group}
		e.children[t.TaskID.Value] = c
		a.statusUpdateLocked(e.fw.id, e, a.newStatus(t.TaskID, e.info.ExecutorID.Value, mesos.TASK_STARTING, mesos.SOURCE_EXECUTOR, nil, ""))
		a.startChildLocked(e, c)
	}
}

func (a *Agent) startChildLocked(e *executorRun, c *child) {
	ctx, f := a.ctx, a.fetcher
	dir := filepath.Join(e.dir, "tasks", c.task.TaskID.Value)
	cmdInfo := c.task.GetCommand()
	cid := e.containerID + "." + c.task.TaskID.Value
	user := cmdInfo.GetUser()
	if user == "" {
		user = e.fw.info.GetUser()
	}
	go func() {
		err := os.MkdirAll(dir, 0o755)
		if err == nil {
			err = f.Fetch(ctx, cid, cmdInfo.GetURIs(), dir, user)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if ctx.Err() != nil || e.state == terminated {
			return
		}
		if c.killing {
			a.childExitedLocked(e, c, -1, "")
			return
		}
		if err == nil {
			err = a.execChildLocked(e, c, dir)
		}
		if err != nil {
			a.childExitedLocked(e, c, -1, err.Error())
			return
		}
		a.statusUpdateLocked(e.fw.id, e, a.newStatus(c.task.TaskID, e.info.ExecutorID.Value, mesos.TASK_RUNNING, mesos.SOURCE_EXECUTOR, nil, ""))
	}()
}

func (a *Agent) execChildLocked(e *executorRun, c *child, dir string) error {
	cmd, err := buildCommand(c.task.GetCommand())
	if err != nil {
		return err
	}
	cmd.Dir = dir
	env := a.executorEnv(e)
	env = append(env, "MESOS_SANDBOX="+dir)
	for _, v := range c.task.GetCommand().GetEnvironment().GetVariables() {
		env = append(env, v.Name+"="+v.GetValue())
	}
	cmd.Env = env
	stdout, err := os.OpenFile(filepath.Join(dir, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(dir, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %v: %w", cmd.Args, err)
	}
	c.pid = cmd.Process.Pid
	pr := trackProcess(cmd.Process)
	ctx := a.ctx
	go func() {
		select {
		case <-pr.done:
		case <-ctx.Done():
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if ctx.Err() == nil {
			a.childExitedLocked(e, c, pr.status, "")
		}
	}()
	return nil
}

// childExitedLocked reports a task's end as the default executor does and
// applies the task group's restart policy.
func (a *Agent) childExitedLocked(e *executorRun, c *child, status int, launchErr string) {
	if _, ok := e.children[c.task.TaskID.Value]; !ok {
		return
	}
	ws := syscall.WaitStatus(status)
	state, msg := mesos.TASK_FINISHED, ""
	switch {
	case c.killing:
		state = mesos.TASK_KILLED
		if status >= 0 {
			msg = "Command " + describeWait(ws)
		}
	case launchErr != "":
		state, msg = mesos.TASK_FAILED, launchErr
	case status < 0:
		state, msg = mesos.TASK_FAILED, "Command terminated with unknown status"
	case ws.Signaled() || ws.ExitStatus() != 0:
		state, msg = mesos.TASK_FAILED, "Command "+describeWait(ws)
	}
	a.statusUpdateLocked(e.fw.id, e, a.newStatus(c.task.TaskID, e.info.ExecutorID.Value, state, mesos.SOURCE_EXECUTOR, nil, msg))
	delete(e.children, c.task.TaskID.Value)
	klog.InfoS("Default executor task ended", "task", c.task.TaskID.Value, "state", state, "message", msg)
	if (state == mesos.TASK_FAILED || state == mesos.TASK_KILLED) && !c.killingGroup && e.state != terminating {
		for _, id := range c.group {
			if o := e.children[id]; o != nil && !o.killing {
				o.killingGroup = true
				a.killChildLocked(e, o, nil)
			}
		}
	}
	if len(e.children) == 0 {
		a.executorTerminatedLocked(e, 0, mesos.REASON_EXECUTOR_TERMINATED, "Executor terminated")
	}
}

// describeWait is WSTRINGIFY: "exited with status 1", "terminated with signal Killed".
func describeWait(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		// strsignal's names are capitalized ("Terminated"); Go's are not.
		name := []byte(ws.Signal().String())
		if len(name) > 0 && name[0] >= 'a' && name[0] <= 'z' {
			name[0] -= 'a' - 'A'
		}
		return "terminated with signal " + string(name)
	}
	return fmt.Sprintf("exited with status %d", ws.ExitStatus())
}

// killChildLocked kills a task's process group: SIGTERM, SIGKILL after the
// grace period.
func (a *Agent) killChildLocked(e *executorRun, c *child, policy *mesos.KillPolicy) {
	c.killing = true
	e.killing[c.task.TaskID.Value] = true
	if c.pid == 0 {
		return // still fetching: reported KILLED when the fetch ends
	}
	grace := a.gracePeriod(e)
	if gp := policy.GetGracePeriod(); gp != nil {
		grace = time.Duration(gp.Nanoseconds)
	} else if gp := c.task.GetKillPolicy().GetGracePeriod(); gp != nil {
		grace = time.Duration(gp.Nanoseconds)
	}
	pid := c.pid
	killGroup(pid, syscall.SIGTERM)
	time.AfterFunc(grace, func() { killGroup(pid, syscall.SIGKILL) })
}

// shutdownDefaultLocked kills every task; the executor ends with the last.
func (a *Agent) shutdownDefaultLocked(e *executorRun) {
	if len(e.children) == 0 {
		a.executorTerminatedLocked(e, 0, mesos.REASON_EXECUTOR_TERMINATED, "Executor shut down")
		return
	}
	for _, c := range e.children {
		a.killChildLocked(e, c, nil)
	}
}
