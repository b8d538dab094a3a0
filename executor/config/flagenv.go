package config

import (
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

// FlagEnvPrefix starts the environment variable that gives a flag its
// default: --kubelet-port is K8SM_KUBELET_PORT.
const FlagEnvPrefix = "K8SM_"

// FlagEnvName is the environment variable of a flag.
func FlagEnvName(flag string) string {
	return FlagEnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ApplyFlagEnv sets every flag of fs that the command line left unset from
// its environment variable, when that is set and not empty. The broker's
// ExecutorInfo is the same on every agent, so per-node settings (node name,
// kubeconfig, CRI socket, ports, certificates) reach the executor the way
// Mesos intends: through the agent's --executor_environment_variables. A
// flag on the command line wins over the environment. It returns the names
// of the variables used, and an error naming every bad value.
func ApplyFlagEnv(fs *pflag.FlagSet, getenv func(string) string) ([]string, error) {
	var used, problems []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := FlagEnvName(f.Name)
		v := getenv(name)
		if v == "" {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			problems = append(problems, fmt.Sprintf("%s=%q: %v", name, v, err))
			return
		}
		used = append(used, name)
	})
	if len(problems) > 0 {
		return used, fmt.Errorf("reading flag defaults from the environment: %s", strings.Join(problems, "; "))
	}
	return used, nil
}
