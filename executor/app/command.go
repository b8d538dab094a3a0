package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/executor"
	"github.com/k8sm/k8sm/executor/proxy"
)

// Main runs k8sm-executor (`k8sm-executor kube-proxy ARGS...` is the stock
// kube-proxy, the executor's child): args is the whole command line (os.Args), getenv
// and environ the process's environment. It returns the exit code: 2 for
// bad flags or environment, 1 for a failure, 0 for a shutdown.
func Main(args []string, getenv func(string) string, environ []string, stderr io.Writer) int {
	if len(args) > 1 && args[1] == proxy.Command {
		// The executor's kube-proxy child (executor/proxy).
		return proxy.Main(args[2:])
	}
	o, used, err := Parse(args[1:], getenv)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "k8sm-executor:", err)
		return 2
	}
	logger := klog.Background()
	if len(used) > 0 {
		logger.Info("Flag defaults from the environment", "variables", used)
	}
	c, err := o.Config(getenv)
	if err != nil {
		logger.Error(err, "Not starting")
		return 2
	}
	defer c.Runtime.Close()

	ctx, cancel := context.WithCancelCause(klog.NewContext(context.Background(), logger))
	defer cancel(nil)
	restart := make(chan struct{}, 1)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go relaySignals(sigs, restart, cancel)

	err = c.Run(ctx, restart)
	if errors.Is(err, executor.ErrRestart) {
		if err := c.reexec(logger, args, environ); err != nil {
			logger.Error(err, "The pods run on; the agent restarts the executor, which adopts them")
		}
		return 1
	}
	return exitCode(logger, err)
}

// relaySignals turns SIGHUP into an in-place restart (an upgrade of the
// binary: the same process for the agent, its pods keep running and are
// adopted) and any other signal into the end of the executor.
func relaySignals(sigs <-chan os.Signal, restart chan<- struct{}, cancel context.CancelCauseFunc) {
	for s := range sigs {
		if s == syscall.SIGHUP {
			select {
			case restart <- struct{}{}:
			default:
			}
			continue
		}
		cancel(fmt.Errorf("signal %v", s))
	}
}
