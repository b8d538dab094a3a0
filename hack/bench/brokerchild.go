package bench

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/broker/app"
)

// RunBroker runs the k8sm-broker program (broker/app, the code of
// broker/cmd/k8sm-broker) with its command-line flags, in a process of its
// own so that its memory and CPU are its own. One thing differs from the
// shipped binary: the Kubernetes client's rate limit. k8sm-broker has no
// flag for it and so runs at client-go's default of 5 requests/s (burst
// 10), at which the node mirror (about five requests per agent per sweep)
// cannot keep 1,000 Nodes' Leases renewed; qps and burst replace it.
func RunBroker(ctx context.Context, args []string, qps float32, burst int) error {
	o := app.NewOptions()
	fs := pflag.NewFlagSet("k8sm-broker", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("broker flags: %w", err)
	}
	if err := logsapi.ValidateAndApply(o.Logs, nil); err != nil {
		return fmt.Errorf("broker logging flags: %w", err)
	}
	c, err := o.Config(ctx)
	if err != nil {
		return fmt.Errorf("configuring the broker: %w", err)
	}
	if qps > 0 {
		rc, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return fmt.Errorf("loading the broker's kubeconfig: %w", err)
		}
		rc.UserAgent = "k8sm-broker"
		rc.QPS, rc.Burst = qps, burst
		if c.Kube, err = kubernetes.NewForConfig(rc); err != nil {
			return fmt.Errorf("building the broker's client: %w", err)
		}
	}
	return c.Run(klog.NewContext(ctx, klog.Background()))
}
