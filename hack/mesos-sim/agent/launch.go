package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/google/uuid"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/netns"
)

func newContainerID() string { return uuid.NewString() }

// sandboxDir follows the real layout: <work_dir>/slaves/<agent>/frameworks/<fw>/executors/<exec>/runs/<container>.
func (a *Agent) sandboxDir(e *executorRun) string {
	return filepath.Join(a.cfg.WorkDir, "slaves", a.id, "frameworks", e.fw.id, "executors", e.info.ExecutorID.Value, "runs", e.containerID)
}

// executorEnv is the environment the real agent gives an executor
// (executorEnvironment in slave.cpp, plus MESOS_SANDBOX from the containerizer).
func (a *Agent) executorEnv(e *executorRun) []string {
	env := map[string]string{}
	for k, v := range a.cfg.ExecutorEnvironment {
		env[k] = v
	}
	env["LIBPROCESS_PORT"] = "0"
	env["MESOS_FRAMEWORK_ID"] = e.fw.id
	env["MESOS_EXECUTOR_ID"] = e.info.ExecutorID.Value
	env["MESOS_DIRECTORY"] = e.dir
	env["MESOS_SANDBOX"] = e.dir
	env["MESOS_SLAVE_ID"] = a.id
	env["MESOS_AGENT_ID"] = a.id
	env["MESOS_SLAVE_PID"] = a.PID()
	env["MESOS_AGENT_ENDPOINT"] = a.Endpoint()
	env["MESOS_HTTP_COMMAND_EXECUTOR"] = "0"
	env["MESOS_CONTAINER_IP"] = a.cfg.IP
	checkpoint := e.fw.info.GetCheckpoint()
	if checkpoint {
		env["MESOS_CHECKPOINT"] = "1"
		env["MESOS_RECOVERY_TIMEOUT"] = master.FormatDuration(a.cfg.RecoveryTimeout)
		env["MESOS_SUBSCRIPTION_BACKOFF_MAX"] = master.FormatDuration(a.cfg.ExecutorReregistrationTimeout)
	} else {
		env["MESOS_CHECKPOINT"] = "0"
	}
	env["MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD"] = master.FormatDuration(a.gracePeriod(e))
	if _, ok := env["PATH"]; !ok {
		// The Mesos launcher supplies a default PATH when none is given.
		env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	if cmd := e.info.GetCommand(); cmd != nil && cmd.Environment != nil {
		for _, v := range cmd.Environment.Variables {
			if v.GetType() == mesos.Environment_Variable_VALUE || v.Type == nil {
				env[v.Name] = v.GetValue()
			}
		}
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func buildCommand(c *mesos.CommandInfo) (*exec.Cmd, error) {
	if c == nil {
		return nil, fmt.Errorf("no CommandInfo")
	}
	if c.Shell == nil || *c.Shell {
		if c.GetValue() == "" {
			return nil, fmt.Errorf("shell command has no value")
		}
		return exec.Command("/bin/sh", "-c", c.GetValue()), nil
	}
	if c.GetValue() == "" {
		return nil, fmt.Errorf("command has no value")
	}
	cmd := exec.Command(c.GetValue())
	if len(c.Arguments) > 0 {
		// Like execvp: arguments[0] is argv[0].
		cmd.Args = append([]string(nil), c.Arguments...)
	}
	return cmd, nil
}

// launchContainerLocked plays the containerizer: it makes the sandbox, has
// the fetcher put the command's URIs in it without holding the agent (a
// download may take long), then calls start. A failure fails the tasks as
// the real agent does when a container fails to launch.
func (a *Agent) launchContainerLocked(e *executorRun, cmdInfo *mesos.CommandInfo, start func() error) {
	e.dir = a.sandboxDir(e)
	e.fetching = true
	ctx, f, dir, cid := a.ctx, a.fetcher, e.dir, e.containerID
	uris, user := cmdInfo.GetURIs(), cmdInfo.GetUser()
	if user == "" {
		user = e.fw.info.GetUser()
	}
	go func() {
		err := os.MkdirAll(dir, 0o755)
		if err != nil {
			err = fmt.Errorf("Failed to create sandbox directory: %w", err)
		} else {
			err = f.Fetch(ctx, cid, uris, dir, user)
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		e.fetching = false
		if ctx.Err() != nil || e.state == terminating || e.state == terminated {
			return // the agent stopped, or the executor was shut down meanwhile
		}
		if err == nil {
			err = start()
		}
		if err != nil {
			klog.ErrorS(err, "Container failed to launch", "framework", e.fw.id, "executor", e.info.ExecutorID.Value, "container", e.containerID)
			// slave.cpp executorLaunched: the tasks fail with the
			// containerizer's reason (sendExecutorTerminatedStatusUpdate).
			e.pendingTermination = &termination{state: mesos.TASK_FAILED, reason: mesos.REASON_CONTAINER_LAUNCH_FAILED,
				message: "Failed to launch container: " + err.Error()}
			a.executorTerminatedLocked(e, -1, mesos.REASON_EXECUTOR_TERMINATED, "Executor terminated")
		}
		a.checkpoint(e)
	}()
}

func (a *Agent) startProcess(e *executorRun, cmdInfo *mesos.CommandInfo) (*exec.Cmd, error) {
	cmd, err := buildCommand(cmdInfo)
	if err != nil {
		return nil, err
	}
	cmd.Dir = e.dir
	cmd.Env = a.executorEnv(e)
	stdout, err := os.OpenFile(filepath.Join(e.dir, "stdout"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening stdout: %w", err)
	}
	stderr, err := os.OpenFile(filepath.Join(e.dir, "stderr"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		stdout.Close()
		return nil, fmt.Errorf("opening stderr: %w", err)
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, so that killing the executor kills what it
	// started (all a posix launcher can do); the linux launcher starts it
	// in its container's cgroups, which hold whatever it starts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = netns.Do(a.cfg.NetNS, func() error { return a.containers.Start(e.containerID, cmd.Start) })
	stdout.Close()
	stderr.Close()
	if err != nil {
		return nil, fmt.Errorf("starting %v: %w", cmd.Args, err)
	}
	return cmd, nil
}

func (a *Agent) startExecutorLocked(e *executorRun) error {
	if e.info.Command == nil {
		return fmt.Errorf("no CommandInfo")
	}
	a.launchContainerLocked(e, e.info.Command, func() error { return a.execExecutorLocked(e) })
	return nil
}

func (a *Agent) execExecutorLocked(e *executorRun) error {
	cmd, err := a.startProcess(e, e.info.Command)
	if err != nil {
		return err
	}
	e.pid = cmd.Process.Pid
	e.state = registering
	pr := trackProcess(cmd.Process)
	a.watchExecutorLocked(e, pr.done, func() int { return pr.status })
	timeout := a.cfg.ExecutorRegistrationTimeout
	e.timer = time.AfterFunc(timeout, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if e.state == registering {
			klog.InfoS("Executor did not subscribe in time, killing it", "executor", e.info.ExecutorID.Value, "timeout", timeout)
			e.state = terminating
			killGroup(e.pid, 9)
		}
	})
	klog.InfoS("Launched executor", "framework", e.fw.id, "executor", e.info.ExecutorID.Value, "pid", e.pid, "sandbox", e.dir)
	return nil
}

// watchExecutorLocked reacts to the executor process's exit.
func (a *Agent) watchExecutorLocked(e *executorRun, done <-chan struct{}, status func() int) {
	stop := make(chan struct{})
	e.stopWatch = stop
	ctx := a.ctx
	go func() {
		select {
		case <-done:
		case <-stop:
			return
		case <-ctx.Done():
			return
		}
		// As the Mesos containerizer: the executor's exit destroys its
		// container (everything it started is killed), and only then does
		// the agent learn that the executor terminated.
		a.destroyContainer(e)
		a.mu.Lock()
		defer a.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		reason := mesos.REASON_EXECUTOR_TERMINATED
		if e.kind == kindCommand {
			a.commandExitedLocked(e, status())
			return
		}
		a.executorTerminatedLocked(e, status(), reason, "Executor terminated")
	}()
}

// destroyContainer kills whatever is left in the executor's container and
// removes its cgroups (linux launcher; nothing with the posix launcher).
// It blocks until then: call it without the agent's lock.
func (a *Agent) destroyContainer(e *executorRun) {
	if err := a.containers.Destroy(e.containerID); err != nil {
		klog.ErrorS(err, "Destroying the executor's container", "framework", e.fw.id, "executor", e.info.ExecutorID.Value, "container", e.containerID)
	}
}

// commandExecutorInfo is the ExecutorInfo the agent makes up for a command
// task, named like the real command executor's.
func commandExecutorInfo(fwID string, t *mesos.TaskInfo) *mesos.ExecutorInfo {
	name := "Command Executor (Task: " + t.TaskID.Value + ") (Command: sh -c '" + t.GetCommand().GetValue() + "')"
	src := t.TaskID.Value
	return &mesos.ExecutorInfo{
		ExecutorID:  mesos.ExecutorID{Value: t.TaskID.Value},
		FrameworkID: &mesos.FrameworkID{Value: fwID},
		Name:        &name,
		Source:      &src,
		Command:     t.Command,
	}
}

// startCommandLocked plays the built-in command executor: run the task's
// command, report STARTING and RUNNING, then FINISHED or FAILED on exit.
func (a *Agent) startCommandLocked(e *executorRun, t mesos.TaskInfo) {
	a.launchContainerLocked(e, t.Command, func() error { return a.execCommandLocked(e, t) })
}

func (a *Agent) execCommandLocked(e *executorRun, t mesos.TaskInfo) error {
	cmd, err := a.startProcess(e, t.Command)
	if err != nil {
		return err
	}
	e.pid = cmd.Process.Pid
	e.state = running
	e.sentTask = true
	pr := trackProcess(cmd.Process)
	a.watchExecutorLocked(e, pr.done, func() int { return pr.status })
	eid := e.info.ExecutorID.Value
	a.statusUpdateLocked(e.fw.id, e, a.newStatus(t.TaskID, eid, mesos.TASK_STARTING, mesos.SOURCE_EXECUTOR, nil, ""))
	a.statusUpdateLocked(e.fw.id, e, a.newStatus(t.TaskID, eid, mesos.TASK_RUNNING, mesos.SOURCE_EXECUTOR, nil, ""))
	return nil
}

func (a *Agent) killCommandLocked(e *executorRun, policy *mesos.KillPolicy) {
	if e.pid == 0 {
		a.executorTerminatedLocked(e, -1, mesos.REASON_EXECUTOR_TERMINATED, "Command killed")
		return
	}
	for id := range e.tasks {
		e.killing[id] = true
	}
	grace := a.cfg.ExecutorShutdownGracePeriod
	if gp := policy.GetGracePeriod(); gp != nil {
		grace = time.Duration(gp.Nanoseconds)
	}
	killGroup(e.pid, syscall.SIGTERM)
	pid := e.pid
	if e.timer != nil {
		e.timer.Stop()
	}
	e.timer = time.AfterFunc(grace, func() { killGroup(pid, syscall.SIGKILL) })
}

func (a *Agent) commandExitedLocked(e *executorRun, status int) {
	for id, t := range e.tasks {
		if isTerminal(t.GetState()) {
			continue
		}
		ws := syscall.WaitStatus(status)
		state, msg := mesos.TASK_FINISHED, "Command exited with status 0"
		switch {
		case e.killing[id]:
			state, msg = mesos.TASK_KILLED, "Command terminated with signal "+ws.Signal().String()
		case status < 0:
			state, msg = mesos.TASK_FAILED, "Command terminated"
		case ws.Signaled():
			state, msg = mesos.TASK_FAILED, "Command terminated with signal "+ws.Signal().String()
		case ws.ExitStatus() != 0:
			state, msg = mesos.TASK_FAILED, fmt.Sprintf("Command exited with status %d", ws.ExitStatus())
		}
		a.statusUpdateLocked(e.fw.id, e, a.newStatus(t.TaskID, e.info.ExecutorID.Value, state, mesos.SOURCE_EXECUTOR, nil, msg))
	}
	a.executorTerminatedLocked(e, status, mesos.REASON_EXECUTOR_TERMINATED, "Executor terminated")
}
