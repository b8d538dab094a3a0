// Package agent is a Mesos agent: it launches a framework's executor as a real
// child process with the environment the real agent sets, serves the v1
// executor HTTP API, forwards status updates to the master until they are
// acknowledged, and recovers checkpointed executors after a restart. A hollow
// mode answers launches without running anything, for scale tests.
package agent

import (
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/k8sm/k8sm/hack/mesos-sim/containment"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
)

// Defaults of the real mesos-agent flags.
const (
	DefaultExecutorShutdownGracePeriod   = 5 * time.Second
	DefaultRecoveryTimeout               = 15 * time.Minute
	DefaultExecutorReregistrationTimeout = 2 * time.Second
	DefaultExecutorRegistrationTimeout   = time.Minute
	// The status update manager retries unacknowledged updates starting at
	// 10s and doubling up to 10 minutes.
	DefaultStatusUpdateRetryInterval = 10 * time.Second
	MaxStatusUpdateRetryInterval     = 10 * time.Minute
)

// Config configures one agent.
type Config struct {
	// ID is the agent id to recover with; empty means "ask the master for one"
	// unless the work directory holds a checkpointed id.
	ID       string
	Hostname string
	IP       string
	// Port 0 picks a free port (fixed after the first start so restarts reuse it).
	Port int
	// NetNS, when set, is the network namespace (a path such as
	// /run/netns/<name>) the agent listens in and starts its executors in:
	// it stands in for the machine a real mesos-agent runs on, so that
	// agents of one sim process have addresses and port ranges of their own.
	NetNS string

	Resources  []mesos.Resource
	Attributes []mesos.Attribute

	// WorkDir holds sandboxes and the checkpoint (meta) directory.
	WorkDir string
	// Hollow agents run no executor process: launches are answered with
	// TASK_RUNNING and kills with TASK_KILLED.
	Hollow bool
	// HollowNoCheckpoint makes a hollow agent keep its executors' state in
	// memory only: no write to disk per task. A benchmark's hollow agents
	// share the machine with what is measured, while a real agent's
	// checkpoint costs its own machine; a restarted agent then recovers
	// nothing. Ignored unless Hollow.
	HollowNoCheckpoint bool

	ExecutorShutdownGracePeriod   time.Duration
	RecoveryTimeout               time.Duration
	ExecutorReregistrationTimeout time.Duration
	ExecutorRegistrationTimeout   time.Duration
	StatusUpdateRetryInterval     time.Duration
	// FetcherCacheDir is --fetcher_cache_dir, cleared at start (empty:
	// <WorkDir>/fetch, so that agents in one process keep apart).
	FetcherCacheDir string
	// FrameworksHome is --frameworks_home, prepended to relative URIs.
	FrameworksHome string
	// ExecutorEnvironment is added to every executor's environment (--executor_environment_variables).
	ExecutorEnvironment map[string]string
	// Containerizer is --launcher, --isolation and --cgroups_root: with the
	// linux launcher each executor runs in cgroups of its own, destroyed
	// (every process in them killed) when it exits (package containment).
	Containerizer containment.Config
}

func (c *Config) setDefaults() {
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.IP == "" {
		c.IP = "127.0.0.1"
	}
	if c.ExecutorShutdownGracePeriod <= 0 {
		c.ExecutorShutdownGracePeriod = DefaultExecutorShutdownGracePeriod
	}
	if c.RecoveryTimeout <= 0 {
		c.RecoveryTimeout = DefaultRecoveryTimeout
	}
	if c.ExecutorReregistrationTimeout <= 0 {
		c.ExecutorReregistrationTimeout = DefaultExecutorReregistrationTimeout
	}
	if c.ExecutorRegistrationTimeout <= 0 {
		c.ExecutorRegistrationTimeout = DefaultExecutorRegistrationTimeout
	}
	if c.StatusUpdateRetryInterval <= 0 {
		c.StatusUpdateRetryInterval = DefaultStatusUpdateRetryInterval
	}
}

// MasterLink is the agent's line to the leading master. The simulator routes
// it to whichever master leads and cuts it to model partitions.
type MasterLink interface {
	RegisterAgent(reg master.AgentRegistration, conn master.AgentConn) (string, error)
	UnregisterAgent(agentID string)
	StatusUpdate(agentID string, u master.StatusUpdate)
	ExecutorExited(agentID, frameworkID, executorID string, status int32)
	ExecutorMessage(agentID, frameworkID, executorID string, data []byte)
}

var _ MasterLink = (*master.Master)(nil)
