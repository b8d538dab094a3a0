// Package podnet joins this node's pods to every other node's, as
// flannel's host-gw backend does: each Node has a pod CIDR of its own
// (kube-controller-manager --allocate-node-cidrs), the kubelet hands it to
// the container runtime (containerd renders its CNI configuration, a bridge
// with host-local addresses, from it), and this package routes every other
// Node's pod CIDR through that Node's InternalIP. Pods' traffic to addresses
// outside the cluster CIDR leaves with the node's address (masquerade), so
// hosts that are not nodes need no routes to pods. Everything it adds is
// removed when Run returns.
//
// The nodes must share a link (one L2 network), as host-gw requires.
package podnet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// RouteProtocol marks the routes this package owns (`ip route show proto
// 77`), so that it replaces and removes only its own.
const RouteProtocol = "77"

// masqComment names the masquerade rule.
const masqComment = "k8sm pod network: pods to outside the cluster CIDR"

// Config says which node this is and what the cluster's pod range is.
type Config struct {
	// NodeName and NodeIP identify this node: its own pod CIDR is on its
	// bridge already and gets no route.
	NodeName, NodeIP string
	// ClusterCIDR is every pod's range (kube-controller-manager
	// --cluster-cidr); traffic from it to elsewhere is masqueraded. Empty:
	// no masquerading.
	ClusterCIDR string
}

// Route is one route to another node's pods.
type Route struct{ Dst, Via string }

// Run keeps the routes to the other Nodes' pods current until ctx ends,
// then removes them and the masquerade rule.
func Run(ctx context.Context, client kubernetes.Interface, cfg Config) error {
	logger := klog.FromContext(ctx).WithName("podnet")
	if cfg.ClusterCIDR != "" {
		if _, err := netip.ParsePrefix(cfg.ClusterCIDR); err != nil {
			return fmt.Errorf("cluster CIDR %q: %w", cfg.ClusterCIDR, err)
		}
		if err := masquerade("-A", cfg.ClusterCIDR); err != nil {
			return err
		}
	}
	defer func() {
		if cfg.ClusterCIDR != "" {
			if err := masquerade("-D", cfg.ClusterCIDR); err != nil {
				logger.Error(err, "Removing the masquerade rule")
			}
		}
		if err := run("ip", "-4", "route", "flush", "proto", RouteProtocol); err != nil {
			logger.Error(err, "Removing the routes to other nodes' pods")
		}
		logger.Info("Pod network routes removed")
	}()

	factory := informers.NewSharedInformerFactory(client, 0)
	nodes := factory.Core().V1().Nodes()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, n any) { poke(n) }, DeleteFunc: poke,
	}); err != nil {
		return fmt.Errorf("watching Nodes: %w", err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	// A route someone removed comes back within a minute.
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
		if !nodes.Informer().HasSynced() {
			continue
		}
		list, err := nodes.Lister().List(labels.Everything())
		if err != nil {
			logger.Error(err, "Listing Nodes")
			continue
		}
		if err := sync(Desired(list, cfg)); err != nil {
			logger.Error(err, "Routing to other nodes' pods")
			continue
		}
	}
}

// Desired is one route per other Node with an IPv4 pod CIDR and an
// InternalIP: the pod CIDR through that address.
func Desired(nodes []*v1.Node, cfg Config) map[string]Route {
	out := map[string]Route{}
	for _, n := range nodes {
		if n.Name == cfg.NodeName {
			continue
		}
		var via string
		for _, a := range n.Status.Addresses {
			if a.Type == v1.NodeInternalIP {
				if ip, err := netip.ParseAddr(a.Address); err == nil && ip.Is4() {
					via = a.Address
					break
				}
			}
		}
		if via == "" || via == cfg.NodeIP {
			continue
		}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
				out[p.Masked().String()] = Route{Dst: p.Masked().String(), Via: via}
			}
		}
	}
	return out
}

// sync makes the routes of RouteProtocol exactly want.
func sync(want map[string]Route) error {
	out, err := exec.Command("ip", "-4", "-j", "route", "show", "proto", RouteProtocol).Output()
	if err != nil {
		return fmt.Errorf("listing routes: %w", err)
	}
	var have []struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
	}
	if len(strings.TrimSpace(string(out))) > 0 {
		if err := json.Unmarshal(out, &have); err != nil {
			return fmt.Errorf("reading `ip -j route`: %w", err)
		}
	}
	var errs []string
	seen := map[string]bool{}
	for _, h := range have {
		w, ok := want[h.Dst]
		switch {
		case !ok:
			if err := run("ip", "-4", "route", "del", h.Dst, "proto", RouteProtocol); err != nil {
				errs = append(errs, err.Error())
			}
		case w.Via == h.Gateway:
			seen[h.Dst] = true
		}
	}
	for dst, r := range want {
		if seen[dst] {
			continue
		}
		if err := run("ip", "-4", "route", "replace", r.Dst, "via", r.Via, "proto", RouteProtocol); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		klog.InfoS("Routing to a node's pods", "podCIDR", r.Dst, "via", r.Via)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// masquerade adds (-A, once) or deletes (-D) the rule that gives pods'
// traffic leaving the cluster CIDR the node's address.
func masquerade(op, cidr string) error {
	rule := []string{"-s", cidr, "!", "-d", cidr, "-m", "comment", "--comment", masqComment, "-j", "MASQUERADE"}
	exists := run("iptables", append([]string{"-w", "-t", "nat", "-C", "POSTROUTING"}, rule...)...) == nil
	if (op == "-A" && exists) || (op == "-D" && !exists) {
		return nil
	}
	return run("iptables", append([]string{"-w", "-t", "nat", op, "POSTROUTING"}, rule...)...)
}

func run(name string, args ...string) error {
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
