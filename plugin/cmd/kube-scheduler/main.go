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

	"github.com/k8sm/k8sm/plugin/mesosoffers"
)

func main() {
	cmd := app.NewSchedulerCommand(app.WithPlugin(mesosoffers.Name, mesosoffers.New))
	os.Exit(cli.Run(cmd))
}
