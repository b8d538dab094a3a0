// Command kube-scheduler is the stock kube-scheduler with the MesosOffers
// plugin compiled in; every upstream flag works unchanged. Profiles enable the
// plugin through a KubeSchedulerConfiguration (manifests/scheduler-config.yaml).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/k8sm/k8sm/pkg/failpoint"
	"github.com/k8sm/k8sm/plugin/mesosoffers"
)

func main() {
	cmd := app.NewSchedulerCommand(app.WithPlugin(mesosoffers.Name, mesosoffers.New))
	cmd.Flags().Var(failpoint.DirFlag{}, "failpoints-dir", "TESTS ONLY: a directory whose files arm failpoints, exact points of the MesosOffers plugin's work where the scheduler SIGKILLs itself or pauses (docs/reliability.md). Empty, the default, turns them off; never set it on a real cluster.")
	os.Exit(cli.Run(cmd))
}
