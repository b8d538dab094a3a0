package config

import (
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParse(t *testing.T) {
	e, err := Parse(env(map[string]string{
		"MESOS_FRAMEWORK_ID": "fw", "MESOS_EXECUTOR_ID": "ex", "MESOS_AGENT_ENDPOINT": "127.0.0.1:5051",
		"MESOS_SLAVE_ID": "a1", "MESOS_DIRECTORY": "/sb", "MESOS_CHECKPOINT": "1",
		"MESOS_RECOVERY_TIMEOUT": "0.5mins", "MESOS_SUBSCRIPTION_BACKOFF_MAX": "5secs",
		"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "1secs",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Env{FrameworkID: "fw", ExecutorID: "ex", AgentID: "a1", AgentEndpoint: "127.0.0.1:5051", Directory: "/sb",
		Checkpoint: true, RecoveryTimeout: 30 * time.Second, SubscriptionBackoffMax: 5 * time.Second, ShutdownGracePeriod: time.Second}
	if e != want {
		t.Errorf("Parse = %+v, want %+v", e, want)
	}

	// Without checkpointing the agent sets no recovery variables: defaults apply.
	e, err = Parse(env(map[string]string{"MESOS_FRAMEWORK_ID": "fw", "MESOS_EXECUTOR_ID": "ex", "MESOS_AGENT_ENDPOINT": "h:1", "MESOS_CHECKPOINT": "0"}))
	if err != nil || e.Checkpoint || e.RecoveryTimeout != DefaultRecoveryTimeout || e.ShutdownGracePeriod != DefaultShutdownGracePeriod {
		t.Errorf("Parse without checkpoint = %+v, %v", e, err)
	}

	_, err = Parse(env(map[string]string{"MESOS_EXECUTOR_ID": "ex", "MESOS_RECOVERY_TIMEOUT": "soon", "MESOS_SUBSCRIPTION_BACKOFF_MAX": "5s", "MESOS_CHECKPOINT": "yes"}))
	for _, name := range []string{"MESOS_FRAMEWORK_ID", "MESOS_AGENT_ENDPOINT", "MESOS_RECOVERY_TIMEOUT", "MESOS_SUBSCRIPTION_BACKOFF_MAX", "MESOS_CHECKPOINT", "as in 5secs"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error %v does not name %s", err, name)
		}
	}
}
