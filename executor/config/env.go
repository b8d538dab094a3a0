// Package config reads what the Mesos agent tells an executor through its
// environment (see Mesos' executor HTTP API documentation).
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	mesostime "github.com/mesos/mesos-go/api/v1/lib/time"
)

// Env is the executor's view of its agent and itself.
type Env struct {
	FrameworkID string
	ExecutorID  string
	AgentID     string
	// AgentEndpoint is host:port of the agent's HTTP API.
	AgentEndpoint string
	// Directory is the executor's sandbox (MESOS_DIRECTORY).
	Directory string
	// Checkpoint: the framework checkpoints, so the executor must survive
	// agent restarts and re-subscribe within RecoveryTimeout.
	Checkpoint bool
	// RecoveryTimeout is how long to wait for a lost agent before giving up
	// (only with Checkpoint).
	RecoveryTimeout time.Duration
	// SubscriptionBackoffMax bounds the wait between subscription attempts.
	SubscriptionBackoffMax time.Duration
	// ShutdownGracePeriod is how long the agent waits after SHUTDOWN before
	// killing the executor: stop every pod within it.
	ShutdownGracePeriod time.Duration
}

// Defaults used when the agent does not say (old agents, non-checkpointing frameworks).
const (
	DefaultShutdownGracePeriod    = 5 * time.Second
	DefaultSubscriptionBackoffMax = 2 * time.Second
	DefaultRecoveryTimeout        = 15 * time.Minute
)

// FromEnv reads the environment of the current process.
func FromEnv() (Env, error) { return Parse(os.Getenv) }

// Parse reads an environment through getenv; the error names every bad or
// missing variable.
func Parse(getenv func(string) string) (Env, error) {
	var problems []string
	required := func(name string) string {
		v := getenv(name)
		if v == "" {
			problems = append(problems, name+" is not set")
		}
		return v
	}
	duration := func(name string, def time.Duration) time.Duration {
		v := getenv(name)
		if v == "" {
			return def
		}
		d, err := mesostime.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %q is not a Mesos duration (a number and one of ns, us, ms, secs, mins, hrs, days, weeks, as in 5secs): %v", name, v, err))
			return def
		}
		return d
	}
	e := Env{
		FrameworkID:   required("MESOS_FRAMEWORK_ID"),
		ExecutorID:    required("MESOS_EXECUTOR_ID"),
		AgentEndpoint: required("MESOS_AGENT_ENDPOINT"),
		Directory:     getenv("MESOS_DIRECTORY"),
		AgentID:       getenv("MESOS_AGENT_ID"),
	}
	if e.AgentID == "" {
		e.AgentID = getenv("MESOS_SLAVE_ID")
	}
	switch v := getenv("MESOS_CHECKPOINT"); v {
	case "", "0", "false":
	case "1", "true":
		e.Checkpoint = true
	default:
		problems = append(problems, fmt.Sprintf("MESOS_CHECKPOINT: %q is neither 0 nor 1", v))
	}
	e.ShutdownGracePeriod = duration("MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", DefaultShutdownGracePeriod)
	e.SubscriptionBackoffMax = duration("MESOS_SUBSCRIPTION_BACKOFF_MAX", DefaultSubscriptionBackoffMax)
	e.RecoveryTimeout = duration("MESOS_RECOVERY_TIMEOUT", DefaultRecoveryTimeout)
	if len(problems) > 0 {
		return e, fmt.Errorf("reading the Mesos executor environment: %s", strings.Join(problems, "; "))
	}
	return e, nil
}
