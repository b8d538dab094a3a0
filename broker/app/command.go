package app

import (
	"context"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"
)

// NewCommand returns the k8sm-broker command.
func NewCommand() *cobra.Command {
	o := NewOptions()
	cmd := &cobra.Command{
		Use:   "k8sm-broker",
		Short: "The Mesos framework of k8sm: offers, launches and task status for the mesos-scheduler",
		Long: `k8sm-broker subscribes to Mesos as a framework, keeps the offers, serves
the Broker gRPC API to the kube-scheduler's MesosOffers plugin (reserve,
launch, kill), mirrors agents as Nodes, and keeps pods and tasks in step.
Replicas elect one leader in ZooKeeper; only it subscribes and serves.`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := logsapi.ValidateAndApply(o.Logs, nil); err != nil {
				return fmt.Errorf("logging flags: %w", err)
			}
			cliflag.PrintFlags(cmd.Flags())
			ctx := cmd.Context()
			cfg, err := o.Config(ctx)
			if err != nil {
				return err
			}
			return cfg.Run(klog.NewContext(ctx, klog.Background()))
		},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("%q does not take any arguments, got %q", cmd.CommandPath(), args)
			}
			return nil
		},
	}
	fss := o.Flags()
	for _, f := range fss.FlagSets {
		cmd.Flags().AddFlagSet(f)
	}
	cliflag.SetUsageAndHelpFunc(cmd, fss, 100)
	return cmd
}

// Main runs the command until ctx ends and exits non-zero on failure.
func Main(ctx context.Context) {
	logs.InitLogs()
	defer logs.FlushLogs()
	if err := NewCommand().ExecuteContext(ctx); err != nil {
		klog.ErrorS(err, "k8sm-broker failed")
		logs.FlushLogs()
		os.Exit(1)
	}
}
