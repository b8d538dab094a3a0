// Package hairpin lets a pod reach, through a Service, a pod on its own
// agent that the Service publishes at hostIP:hostPort (a host-private
// Service, broker/hostprivate).
//
// kube-proxy (iptables or nftables) sends a Service's connection to an
// endpoint with one destination NAT. When the endpoint is this agent's own
// address, that NAT is the connection's only one: the host port's mapping
// (CNI portmap, also a destination NAT) never applies, and the connection
// is delivered to the host, where nothing listens on the host port. So the
// executor listens on NodeIP:hostPort for every TCP host port of the pods
// of the pods its kubelet runs and relays to the pod's address and
// container port. Only
// such connections reach the listener: every other one to the host port
// (from another agent, from this host's own processes, from a pod at
// hostIP:hostPort) is taken to the pod by portmap before the host sees it.
// A listener also holds the port Mesos allocated to the pod, as the
// kubelet's hostport manager once did.
package hairpin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// Desired maps each TCP host port of the pods the kubelet runs to the
// pod's address and container port ("ip:port" both). The host ports are
// the kubelet's pods' (the executor's: only ports Mesos allocated to their
// tasks, never what an edited annotation says), the addresses and phases
// the API server's. Host-network pods listen on their ports themselves.
func Desired(kubeletPods []*v1.Pod, api map[types.UID]*v1.Pod, nodeIP string) map[string]string {
	out := map[string]string{}
	for _, kp := range kubeletPods {
		p := api[kp.UID]
		if kp.Spec.HostNetwork || p == nil || p.Status.PodIP == "" || p.Status.Phase != v1.PodRunning {
			continue
		}
		for _, c := range kp.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.HostPort == 0 || (cp.Protocol != "" && cp.Protocol != v1.ProtocolTCP) ||
					(cp.HostIP != "" && cp.HostIP != nodeIP) {
					continue
				}
				out[net.JoinHostPort(nodeIP, strconv.Itoa(int(cp.HostPort)))] = net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(cp.ContainerPort)))
			}
		}
	}
	return out
}

// Kubelet is what the executor runs its pods with (executor.Kubelet).
type Kubelet interface {
	Start(ctx context.Context, node string, pods <-chan []*v1.Pod) error
}

// Relays keeps a relay on NodeIP:hostPort for every host port of the
// pods the kubelet runs.
type Relays struct {
	client kubernetes.Interface
	nodeIP string

	mu      sync.Mutex
	kubelet []*v1.Pod
	changed chan struct{}
	byAddr  map[string]*relay
}

// New makes the relays of the node at nodeIP; Kubelet starts them.
func New(client kubernetes.Interface, nodeIP string) (*Relays, error) {
	if net.ParseIP(nodeIP) == nil {
		return nil, fmt.Errorf("the node's IP %q is no address: set --node-ip", nodeIP)
	}
	return &Relays{client: client, nodeIP: nodeIP, changed: make(chan struct{}, 1), byAddr: map[string]*relay{}}, nil
}

// Kubelet wraps k: every set of pods the executor hands it sets the relays
// too, and its Start starts them (they end with ctx).
func (r *Relays) Kubelet(k Kubelet) Kubelet { return teeKubelet{k, r} }

type teeKubelet struct {
	Kubelet
	r *Relays
}

func (t teeKubelet) Start(ctx context.Context, node string, pods <-chan []*v1.Pod) error {
	out := make(chan []*v1.Pod, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case set := <-pods:
				t.r.setKubeletPods(set)
				// Only the newest set matters (as the executor sends).
				select {
				case <-out:
				default:
				}
				out <- set
			}
		}
	}()
	go t.r.run(ctx, node)
	return t.Kubelet.Start(ctx, node, out)
}

func (r *Relays) setKubeletPods(set []*v1.Pod) {
	r.mu.Lock()
	r.kubelet = set
	r.mu.Unlock()
	r.poke()
}

func (r *Relays) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// run follows the node's pods in the API server (their addresses) until
// ctx ends, then closes every relay.
func (r *Relays) run(ctx context.Context, node string) {
	logger := klog.FromContext(ctx).WithName("hairpin")
	factory := informers.NewSharedInformerFactoryWithOptions(r.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
		}))
	pods := factory.Core().V1().Pods()
	poke := func(any) { r.poke() }
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, p any) { poke(p) }, DeleteFunc: poke,
	}); err != nil {
		logger.Error(err, "Watching the node's pods")
		return
	}
	defer r.closeAll()
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	// A port that could not be bound is tried again.
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.changed:
		case <-tick.C:
		}
		if !pods.Informer().HasSynced() {
			continue
		}
		list, err := pods.Lister().List(labels.Everything())
		if err != nil {
			logger.Error(err, "Listing the node's pods")
			continue
		}
		api := map[types.UID]*v1.Pod{}
		for _, p := range list {
			api[p.UID] = p
		}
		r.mu.Lock()
		kubelet := r.kubelet
		r.mu.Unlock()
		r.sync(logger, Desired(kubelet, api, r.nodeIP))
	}
}

type relay struct {
	ln     net.Listener
	mu     sync.Mutex
	target string
}

func (r *relay) to() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.target
}

func (rs *Relays) sync(logger klog.Logger, want map[string]string) {
	for addr, rl := range rs.byAddr {
		target, ok := want[addr]
		if !ok {
			_ = rl.ln.Close()
			delete(rs.byAddr, addr)
			continue
		}
		rl.mu.Lock()
		rl.target = target
		rl.mu.Unlock()
	}
	for addr, target := range want {
		if _, ok := rs.byAddr[addr]; ok {
			continue
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			logger.Error(err, "Relaying a host port to its pod", "hostPort", addr, "pod", target)
			continue
		}
		rl := &relay{ln: ln, target: target}
		rs.byAddr[addr] = rl
		go rl.serve(logger)
	}
}

func (rs *Relays) closeAll() {
	for addr, rl := range rs.byAddr {
		_ = rl.ln.Close()
		delete(rs.byAddr, addr)
	}
}

func (r *relay) serve(logger klog.Logger) {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logger.Error(err, "Accepting on a host port", "hostPort", r.ln.Addr().String())
			}
			return
		}
		go pipe(c, r.to())
	}
}

// pipe relays one connection to target, each direction until its end.
func pipe(c net.Conn, target string) {
	defer c.Close()
	d, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer d.Close()
	done := make(chan struct{}, 2)
	half := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go half(d, c)
	go half(c, d)
	<-done
	<-done
}
