package bench

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/broker/app"
)

// RunBroker runs the k8sm-broker program (broker/app, the code of
// broker/cmd/k8sm-broker) with its command-line flags, in a process of its
// own so that its memory and CPU are its own; nothing else differs from the
// shipped binary.
func RunBroker(ctx context.Context, args []string) error {
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
	return c.Run(klog.NewContext(ctx, klog.Background()))
}
