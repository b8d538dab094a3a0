// Command k8sm-bench is the benchmark driver behind `make bench`: k8sm's
// scheduling path beside the stock kube-scheduler on one real API server,
// with mesos-sim's hollow agents (launches answer TASK_RUNNING and run
// nothing). It prints a table and writes _output/bench/results.json; it
// never fails on a timing.
//
//	k8sm-bench                                  # 100 and 1,000 agents, 1,000 pods
//	k8sm-bench --agents=5000,10000 --pods=10000 # the big sizes
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The broker runs as a child process of the driver (its own memory
	// and CPU): `k8sm-bench broker <k8sm-broker flags>`.
	if len(os.Args) > 1 && os.Args[1] == "broker" {
		os.Exit(runBroker(ctx, os.Args[2:]))
	}
	os.Exit(run(ctx))
}

func runBroker(ctx context.Context, args []string) int {
	if err := bench.RunBroker(ctx, args); err != nil {
		klog.ErrorS(err, "k8sm-broker failed")
		klog.Flush()
		return 1
	}
	return 0
}

func run(ctx context.Context) int {
	wd, _ := os.Getwd()
	cfg := bench.Config{}
	var agents string
	fs := flag.NewFlagSet("k8sm-bench", flag.ExitOnError)
	fs.StringVar(&cfg.BinDir, "bin-dir", filepath.Join(wd, "_output", "bin"), "where `make build` left etcd, kube-apiserver, kube-controller-manager and kube-scheduler")
	fs.StringVar(&cfg.OutDir, "out", filepath.Join(wd, "_output", "bench"), "where results.json, logs and profiles go")
	fs.StringVar(&agents, "agents", "100,1000", "hollow Mesos agents per scale run, comma-separated (the big sizes, make bench-big: 5000,10000); empty: no scale run")
	fs.BoolVar(&cfg.HollowCheckpoint, "hollow-checkpoint", true, "hollow agents write each task's checkpoint to disk, as real agents do; false keeps that work off the measured machine (every figure says which)")
	fs.IntVar(&cfg.Pods, "pods", 1000, "pods per burst phase of a scale run (the big size: 10000)")
	fs.Float64Var(&cfg.PacedRate, "paced-rate", 100, "pods/s of the paced phases")
	fs.IntVar(&cfg.PacedPods, "paced-pods", 1000, "pods of each paced phase (0: none)")
	fs.IntVar(&cfg.BrokerRoundTrips, "broker-round-trips", 200, "Reserve+Launch round trips of the broker-alone phase (0: none)")
	fs.BoolVar(&cfg.Variations, "variations", true, "also vary allocation interval, refuse_seconds, batching window and frameworks")
	fs.IntVar(&cfg.VariationAgents, "variation-agents", 100, "agents of the variation runs")
	fs.IntVar(&cfg.VariationPods, "variation-pods", 200, "pods of the variation runs")
	fs.BoolVar(&cfg.SchedulerVariations, "scheduler-variations", false, "also run k8sm alone (burst, then paced) with each scheduler knob beside a base as shipped: a lower percentageOfNodesToScore, MesosOffers' opportunisticBatching, the SchedulerAsyncAPICalls feature gate, and all three")
	fs.IntVar(&cfg.SchedulerVariationAgents, "scheduler-variation-agents", 1000, "agents of the scheduler knob runs")
	fs.IntVar(&cfg.SchedulerVariationPods, "scheduler-variation-pods", 1000, "pods of the burst phase of the scheduler knob runs (the paced phase has --paced-pods)")
	fs.IntVar(&cfg.SchedulerVariationPercentage, "scheduler-variation-percentage", 10, "percentageOfNodesToScore of the knob runs that lower it (1-100)")
	fs.IntVar(&cfg.ProfileSeconds, "profile-seconds", 10, "CPU profiles of broker, scheduler and driver during the k8sm burst at the largest size (0: none)")
	brokerQPS := fs.Float64("broker-kube-qps", 50, "the broker's --kube-api-qps (burst twice that); 50 is k8sm-broker's default")
	fs.StringVar(&cfg.BrokerMemoryLimit, "broker-memory-limit", "", "the broker's --memory-limit (the Go runtime's soft limit, e.g. 180Mi); empty: none (the shipped Deployment's 256Mi container limit gives the broker 90% of it)")
	fs.IntVar(&cfg.SchedulerQPS, "scheduler-kube-qps", 500, "clientConnection.qps of the scheduler (burst twice that)")
	fs.DurationVar(&cfg.PhaseTimeout, "phase-timeout", 5*time.Minute, "how long one phase may wait for its pods")
	fs.DurationVar(&cfg.NodesTimeout, "nodes-timeout", 2*time.Minute, "how long to wait for every agent's Node to be Ready before going on with those that are")
	only := fs.String("only", "", "run only the scenarios whose name matches this regular expression (n100, n1000, var-base, sched-batching, ...)")
	klog.InitFlags(fs)
	_ = fs.Parse(os.Args[1:])
	cfg.BrokerQPS = float32(*brokerQPS)
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintf(os.Stderr, "--only: %v\n", err)
			return 2
		}
		cfg.Only = re
	}
	if p := cfg.SchedulerVariationPercentage; p < 1 || p > 100 {
		fmt.Fprintf(os.Stderr, "--scheduler-variation-percentage: %d is not a percentage of nodes (1-100)\n", p)
		return 2
	}
	// --agents= (empty): no scale run, the variations alone.
	if strings.TrimSpace(agents) != "" {
		for _, a := range strings.Split(agents, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(a))
			if err != nil || n <= 0 {
				fmt.Fprintf(os.Stderr, "--agents: %q is not a positive number\n", a)
				return 2
			}
			cfg.Agents = append(cfg.Agents, n)
		}
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg.Self = self
	res, err := bench.Run(ctx, cfg)
	if res != nil {
		bench.WriteTable(os.Stdout, res)
		fmt.Printf("\nresults: %s\n", filepath.Join(cfg.OutDir, "results.json"))
	}
	if err != nil {
		klog.ErrorS(err, "Benchmark run failed")
		return 1
	}
	return 0
}
