// Command local-cluster brings k8sm's local cluster up and down on
// loopback, under one state directory: etcd, kube-apiserver,
// kube-controller-manager, ZooKeeper, containerd, mesos-sim (a Mesos master
// and agents running the real k8sm-executor, each agent with a containerd
// of its own), the broker and the k8sm kube-scheduler; then the cluster
// DNS and a two-tier sample. `make up` and `make down` call it.
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
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
			printUsage(cl)
			return
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "make up failed: %v\n", err)
			fmt.Fprintln(os.Stderr, "Fix the cause and run `make up` again (what is already running is kept), or `make down` to start afresh.")
			os.Exit(1)
		}
		printUsage(cl)
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

// sampleNodePort is the two-tier sample's NodePort, or 0 when it is not
// there (deleted by its user).
func sampleNodePort(cl *cluster.Cluster) int32 {
	cs, err := cl.Client()
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := cs.CoreV1().Services("default").Get(ctx, cluster.SampleFrontend, metav1.GetOptions{})
	if err != nil || len(svc.Spec.Ports) == 0 {
		return 0
	}
	return svc.Spec.Ports[0].NodePort
}

func printUsage(cl *cluster.Cluster) {
	c := cl.Config
	bin, _ := filepath.Abs(c.BinDir)
	kubectl := fmt.Sprintf("%s --kubeconfig %s", filepath.Join(bin, "kubectl"), cl.AdminKubeconfig)
	fmt.Printf(`
k8sm local cluster is up (state in %[1]s).

  export KUBECONFIG=%[2]s
  export PATH=%[3]s:$PATH
  kubectl get nodes -L k8sm.io/attribute-zone
  kubectl get pods -o wide
`, c.StateDir, cl.AdminKubeconfig, bin)
	if c.Agents > 0 && c.SampleDeployment {
		fmt.Printf(`  kubectl scale deployment hello --replicas=4      # the sample's back tier, placed through Mesos offers
`)
		if port := sampleNodePort(cl); port != 0 {
			fmt.Printf(`
The two-tier sample: frontend (NodePort Service) calls hello by its Service name.
`)
			for i := 1; i <= c.Agents; i++ {
				fmt.Printf("  curl http://%s:%d/        # through %s's kube-proxy\n", c.AgentIP(i), port, c.AgentName(i))
			}
			fmt.Printf(`  kubectl exec deploy/frontend -- /webapp get http://hello/ http://frontend.default.svc.cluster.local/
`)
		}
	}
	fmt.Printf(`
or, without exporting anything:
  %[1]s get pods -o wide

  kube-apiserver     %[2]s
  etcd               http://127.0.0.1:%[3]d
  ZooKeeper          127.0.0.1:%[4]d   (Mesos master: zk://127.0.0.1:%[4]d/mesos)
`, kubectl, c.APIServerURL(), c.EtcdPort, c.ZooKeeperPort)
	if c.Containerd && c.Agents == 0 {
		fmt.Printf("  containerd         unix://%s\n", c.ContainerdSocket())
	}
	if c.Agents > 0 {
		fmt.Printf(`  Mesos master       %[1]s/master/state   (curl -s %[1]s/master/state | jq '.frameworks[].tasks[] | {name, state, slave_id}')
  Mesos agents       %[2]s, each a host of its own (network namespace; ip netns list), with its containerd under %[5]s/a<i>/containerd
  mesos-sim faults   %[6]s/cluster   (POST /agents/{i}/kill, /agents/{i}/restart)
  broker metrics     %[7]s
  k8sm scheduler     https://127.0.0.1:%[8]d/healthz   (profile mesos-scheduler)
  executor logs      %[5]s/a<i>/mesos/slaves/*/frameworks/*/executors/*/runs/*/stderr (the Mesos sandboxes)
`, cl.MesosMasterURL, strings.Join(cl.AgentNodes, ", "), 0, 0, c.StateDir,
			cl.SimControlURL, cl.BrokerMetricsURL, c.SchedulerPort)
		for i := 1; i <= c.Agents; i++ {
			fmt.Printf("    %-16s %s: Mesos agent http://%[2]s:%d/state, kubelet :%d, host ports %d-%d; ip netns exec %s <command>\n",
				c.AgentName(i)+":", c.AgentIP(i), c.MesosAgentPort, c.KubeletPort, c.AgentPortsBegin, c.AgentPortsEnd, c.AgentNetNS(i))
		}
		for i := 1; i <= c.Agents; i++ {
			runs, _ := filepath.Glob(filepath.Join(c.StateDir, fmt.Sprintf("a%d", i), "mesos", "slaves", "*", "frameworks", "*", "executors", "*", "runs", "*", "stderr"))
			if len(runs) > 0 {
				fmt.Printf("    %-16s %s\n", c.AgentName(i)+":", newest(runs))
			}
		}
	}
	fmt.Printf(`  logs               %s/   (one <component>.log each)

Stop it all with: make down
`, cl.LogDir)
}

// newest is the most recently written of files: the running executor's log.
func newest(files []string) string {
	best, bestTime := "", int64(0)
	for _, f := range files {
		if st, err := os.Stat(f); err == nil && st.ModTime().UnixNano() >= bestTime {
			best, bestTime = f, st.ModTime().UnixNano()
		}
	}
	return best
}
