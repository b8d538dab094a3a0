// Command local-cluster brings k8sm's local cluster up and down: etcd,
// kube-apiserver, kube-controller-manager, ZooKeeper and containerd on
// loopback, under one state directory. `make up` and `make down` call it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/hack/cluster"
)

func main() {
	klog.InitFlags(nil)
	cwd, _ := os.Getwd()
	cfg := cluster.DefaultConfig(cwd)
	flag.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory holding every file of the cluster (env K8SM_STATE_DIR)")
	flag.StringVar(&cfg.BinDir, "bin-dir", cfg.BinDir, "directory of the built binaries (env K8SM_BIN_DIR)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [flags] up|down|status\n\n", filepath.Base(os.Args[0]))
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch flag.Arg(0) {
	case "up":
		cl, err := cluster.Up(ctx, cfg)
		if errors.Is(err, cluster.ErrAlreadyUp) {
			fmt.Println(err)
			printUsage(cl.Config)
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "make up failed: %v\n", err)
			fmt.Fprintln(os.Stderr, "Fix the cause and run `make up` again (what is already running is kept), or `make down` to start afresh.")
			os.Exit(1)
		}
		printUsage(cl.Config)
	case "down":
		if err := cluster.Down(ctx, cfg.StateDir); err != nil {
			fmt.Fprintf(os.Stderr, "make down: %v\n", err)
			os.Exit(1)
		}
		fmt.Printf("local cluster in %s is down; nothing of it is left.\n", cfg.StateDir)
	case "status":
		st := cluster.Status(cfg.StateDir, cfg)
		names := make([]string, 0, len(st))
		for n := range st {
			names = append(names, n)
		}
		sort.Strings(names)
		down := false
		for _, n := range names {
			state := "running"
			if !st[n] {
				state, down = "not running", true
			}
			fmt.Printf("%-25s %s\n", n, state)
		}
		if down {
			os.Exit(1)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func printUsage(c cluster.Config) {
	abs, _ := filepath.Abs(c.StateDir)
	bin, _ := filepath.Abs(c.BinDir)
	fmt.Printf(`
k8sm local cluster is up (state in %[1]s).

  export KUBECONFIG=%[2]s
  export PATH=%[3]s:$PATH
  kubectl get --raw /readyz
  kubectl create deployment hello --image=%[4]s

  kube-apiserver  %[5]s
  etcd            http://127.0.0.1:%[6]d
  ZooKeeper       127.0.0.1:%[7]d   (zk://127.0.0.1:%[7]d/mesos)
  containerd      unix://%[8]s
  logs            %[1]s/logs/

Stop it all with: make down
`, abs, c.PKI().Kubeconfig("admin"), bin, cluster.WebappImage, c.APIServerURL(), c.EtcdPort, c.ZooKeeperPort, c.ContainerdSocket())
}
