package master

import (
	"crypto/tls"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
)

// Defaults of the real mesos-master flags.
const (
	DefaultHeartbeatInterval    = 15 * time.Second
	DefaultAllocationInterval   = time.Second
	DefaultRefuseSeconds        = 5.0
	DefaultAgentPingTimeout     = 15 * time.Second
	DefaultMaxAgentPingTimeouts = 5
)

// Config configures one master.
type Config struct {
	// ID is the master's id; a random UUID when empty.
	ID       string
	Hostname string
	IP       string
	// Port is filled in from the listener when zero.
	Port int

	HeartbeatInterval  time.Duration
	AllocationInterval time.Duration
	// OfferTimeout rescinds unused offers after this long; zero disables it, as --offer_timeout does.
	OfferTimeout time.Duration
	// AgentPingTimeout*MaxAgentPingTimeouts is how long an unresponsive agent
	// stays registered before it is marked unreachable.
	AgentPingTimeout     time.Duration
	MaxAgentPingTimeouts int
	// MaxRequestSize bounds a call body; larger bodies are refused like unparsable ones.
	MaxRequestSize int
	// Credentials (principal → secret) turn on HTTP framework
	// authentication, as --authenticate_http_frameworks with
	// --http_framework_authenticators=basic and --credentials do: the
	// scheduler API then answers 401 to a request without a valid
	// principal and secret. nil: frameworks subscribe unauthenticated.
	Credentials map[string]string
	// TLS serves every endpoint over https only, as libprocess does with
	// LIBPROCESS_SSL_ENABLED=true (nil: plain http).
	TLS *tls.Config
	// TLSDowngrade also accepts plain http on the TLS port
	// (LIBPROCESS_SSL_SUPPORT_DOWNGRADE=true).
	TLSDowngrade bool
}

func (c *Config) setDefaults() {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.AllocationInterval <= 0 {
		c.AllocationInterval = DefaultAllocationInterval
	}
	if c.AgentPingTimeout <= 0 {
		c.AgentPingTimeout = DefaultAgentPingTimeout
	}
	if c.MaxAgentPingTimeouts <= 0 {
		c.MaxAgentPingTimeouts = DefaultMaxAgentPingTimeouts
	}
	if c.MaxRequestSize <= 0 {
		c.MaxRequestSize = 4 << 20
	}
	if c.Hostname == "" {
		c.Hostname = "localhost"
	}
	if c.IP == "" {
		c.IP = "127.0.0.1"
	}
}

// AgentConn is the master's line to a registered agent: what the real master
// sends as libprocess messages. Implementations must not block and must not
// call back into the master synchronously.
type AgentConn interface {
	// RunTask starts task (or group) on executor (nil executor: command task).
	RunTask(fw mesos.FrameworkInfo, executor *mesos.ExecutorInfo, task *mesos.TaskInfo, group *mesos.TaskGroupInfo)
	KillTask(frameworkID, taskID string, policy *mesos.KillPolicy)
	ShutdownExecutor(frameworkID, executorID string)
	ShutdownFramework(frameworkID string)
	AcknowledgeUpdate(frameworkID, taskID string, uuid []byte)
	FrameworkMessage(frameworkID, executorID string, data []byte)
	// Ping reports whether the agent answers; a partitioned agent does not.
	Ping() bool
}

// AgentRegistration is what an agent reports when it (re-)registers.
type AgentRegistration struct {
	Info mesos.AgentInfo
	// PID is the libprocess-style id "slave(1)@ip:port", shown in state.
	PID  string
	IP   string
	Port int
	// Tasks, Executors and Frameworks are what the agent still runs
	// (re-registration after a master failover or partition).
	Tasks      []mesos.Task
	Executors  []mesos.ExecutorInfo
	Frameworks []mesos.FrameworkInfo
}

// StatusUpdate is an update from an agent's status update manager.
type StatusUpdate struct {
	FrameworkID string
	ExecutorID  string
	Status      mesos.TaskStatus
}

// CallHook lets tests drop or delay scheduler calls before the master acts on
// them, or lose the answer to one it acted on.
type CallHook func(call *scheduler.Call) CallFate

// CallFate is what a CallHook makes of a call. Dropped calls still get 202,
// as a message lost after acceptance would. A call whose answer is lost is
// acted on and its connection then broken without an answer, as when a
// master's reply times out or its connection resets after it took the call:
// the caller cannot tell whether it was taken.
type CallFate struct {
	Drop       bool
	Delay      time.Duration
	LoseAnswer bool
}
