package bench

import (
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/k8sm/k8sm/plugin/mesosoffers"
)

func TestSchedulerConfigHasBothProfilesOnTheBenchBroker(t *testing.T) {
	out, err := schedulerConfig("127.0.0.1:4242", "/x/admin.kubeconfig", 500, SchedulerKnobs{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := readConfig(t, out)
	if len(cfg.Profiles) != 2 || cfg.Profiles[0].SchedulerName != K8smScheduler || cfg.Profiles[1].SchedulerName != StockScheduler {
		t.Fatalf("profiles %+v, want %s then %s:\n%s", cfg.Profiles, K8smScheduler, StockScheduler, out)
	}
	if len(cfg.Profiles[1].PluginConfig) != 0 {
		t.Errorf("the stock profile configures plugins: %+v", cfg.Profiles[1].PluginConfig)
	}
	found := false
	for _, pc := range cfg.Profiles[0].PluginConfig {
		if pc.Name != mesosoffers.Name {
			continue
		}
		found = true
		if addrs, _ := pc.Args["brokerAddresses"].([]any); len(addrs) != 1 || addrs[0] != "127.0.0.1:4242" {
			t.Errorf("brokerAddresses %v, want [127.0.0.1:4242]", pc.Args["brokerAddresses"])
		}
	}
	if !found {
		t.Errorf("the %s profile has no %s pluginConfig:\n%s", K8smScheduler, mesosoffers.Name, out)
	}
	cc := cfg.ClientConnection
	if cc["kubeconfig"] != "/x/admin.kubeconfig" || cc["qps"] != float64(500) || cc["burst"] != float64(1000) {
		t.Errorf("clientConnection %v, want the admin kubeconfig at qps 500, burst 1000", cc)
	}
	if cfg.LeaderElection["leaderElect"] != false {
		t.Errorf("leaderElection %v: one replica must not wait for an election", cfg.LeaderElection)
	}
}

// renderedConfig is what the tests read back of a rendered configuration.
type renderedConfig struct {
	ClientConnection map[string]any `json:"clientConnection"`
	LeaderElection   map[string]any `json:"leaderElection"`
	Profiles         []struct {
		SchedulerName            string `json:"schedulerName"`
		PercentageOfNodesToScore *int   `json:"percentageOfNodesToScore"`
		PluginConfig             []struct {
			Name string         `json:"name"`
			Args map[string]any `json:"args"`
		} `json:"pluginConfig"`
	} `json:"profiles"`
}

func readConfig(t *testing.T, out []byte) renderedConfig {
	t.Helper()
	var cfg renderedConfig
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("%v in\n%s", err, out)
	}
	return cfg
}
