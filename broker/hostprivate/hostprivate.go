// Package hostprivate publishes the EndpointSlices of host-private
// Services: for Mesos clusters whose pod addresses are not routable beyond
// their agent, a Service without spec.selector and with the annotation
// k8sm.io/host-private-selector gets endpoints at each selected pod's
// agent address and the host port Mesos allocated to it. kube-proxy then
// sends the Service's traffic to hostIP:hostPort, which every agent
// reaches, and the agent's port mapping takes it to the pod.
//
// The slices carry endpointslice.kubernetes.io/managed-by
// host-private.k8sm.io, so the stock EndpointSlice controllers leave them
// alone, and a controller owner reference to their Service, so they go
// with it. They follow the pods: a pod that starts, becomes ready, is
// deleted, ends, or runs again elsewhere (another agent, another host
// port) changes them.
//
// As in the broker's pod controller, the informer handlers only queue the
// Service; a few workers compute its slices and write only what differs.
package hostprivate

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Event reasons on a host-private Service.
const (
	// ReasonInvalid: the Service's k8sm.io/ annotations or spec are wrong;
	// it gets no endpoints until they are fixed.
	ReasonInvalid = "K8smHostPrivateInvalid"
	// ReasonPodWithoutHostPort: a selected pod cannot serve a Service port
	// at its agent's address.
	ReasonPodWithoutHostPort = "K8smHostPrivatePort"
)

// QueueName names the controller's work queue in the workqueue_* metrics.
const QueueName = "k8sm_host_private"

// Config of the controller.
type Config struct {
	Client kubernetes.Interface
	// Pods is the informer on the mesos-scheduler's pods, shared with the
	// broker's pod controller and started by it: only pods Mesos runs have
	// host ports Mesos allocated.
	Pods cache.SharedIndexInformer
	// Workers bounds the Services synced at once (default 2).
	Workers int
	Resync  time.Duration
}

// Controller keeps host-private Services' EndpointSlices.
type Controller struct {
	cfg       Config
	factory   informers.SharedInformerFactory
	slicesF   informers.SharedInformerFactory
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	pods      cache.Indexer
	synced    []cache.InformerSynced
	queue     workqueue.TypedRateLimitingInterface[string]
	recorder  record.EventRecorder
	broadcast record.EventBroadcaster

	mu sync.Mutex
	// reported: the last problems recorded as events per Service key, so
	// that a Service's events say each new problem once.
	reported map[string]string
}

// New builds the controller; Run starts it.
func New(cfg Config) *Controller {
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Minute
	}
	factory := informers.NewSharedInformerFactory(cfg.Client, cfg.Resync)
	// Only the slices this controller writes.
	slicesF := informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.Resync,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.Set{discoveryv1.LabelManagedBy: taskinfo.HostPrivateManagedBy}.String()
		}))
	svcs := factory.Core().V1().Services()
	sl := slicesF.Discovery().V1().EndpointSlices()
	b := record.NewBroadcaster()
	c := &Controller{
		cfg: cfg, factory: factory, slicesF: slicesF,
		services: svcs.Lister(), slices: sl.Lister(), pods: cfg.Pods.GetIndexer(),
		synced: []cache.InformerSynced{svcs.Informer().HasSynced, sl.Informer().HasSynced, cfg.Pods.HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: QueueName}),
		broadcast: b,
		recorder:  b.NewRecorder(scheme.Scheme, v1.EventSource{Component: "k8sm-broker"}),
		reported:  map[string]string{},
	}
	_, _ = svcs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.serviceChanged(nil, obj) },
		UpdateFunc: func(old, obj any) {
			c.serviceChanged(old, obj)
		},
		DeleteFunc: func(obj any) { c.serviceChanged(obj, nil) },
	})
	_, _ = sl.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.sliceChanged,
		UpdateFunc: func(_, obj any) { c.sliceChanged(obj) },
		DeleteFunc: c.sliceChanged,
	})
	_, _ = cfg.Pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.podChanged(nil, obj) },
		UpdateFunc: c.podChanged,
		DeleteFunc: func(obj any) { c.podChanged(obj, nil) },
	})
	return c
}

// HasSynced reports whether the informers are in sync.
func (c *Controller) HasSynced() bool {
	for _, s := range c.synced {
		if !s() {
			return false
		}
	}
	return true
}

// Run starts the informers (not the pods', which its owner starts) and the
// workers, and blocks until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	defer c.queue.ShutDown()
	c.broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.cfg.Client.CoreV1().Events("")})
	defer c.broadcast.Shutdown()
	c.factory.Start(ctx.Done())
	c.slicesF.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	klog.FromContext(ctx).Info("Host-private Service informers synced", "workers", c.cfg.Workers)
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
}

// serviceChanged queues a Service that is, or was, host-private.
func (c *Controller) serviceChanged(old, obj any) {
	for _, o := range []any{old, obj} {
		if svc := asService(o); svc != nil && hasAnnotation(svc) {
			c.enqueue(svc.Namespace, svc.Name)
			return
		}
	}
}

func hasAnnotation(svc *v1.Service) bool {
	for k := range svc.Annotations {
		if strings.HasPrefix(k, taskinfo.AnnotationPrefix+"/") {
			return true
		}
	}
	return false
}

// sliceChanged queues the Service of a slice this controller wrote, so
// that a slice changed or deleted by anyone else is put back.
func (c *Controller) sliceChanged(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			c.enqueue(s.Namespace, name)
		}
	}
}

// podChanged queues the host-private Services of the pod's namespace that
// select it, before or after the change.
func (c *Controller) podChanged(old, obj any) {
	var pods []*v1.Pod
	for _, o := range []any{old, obj} {
		if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		if p, ok := o.(*v1.Pod); ok {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return
	}
	svcs, err := c.services.Services(pods[0].Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, svc := range svcs {
		sel, ok, err := Selector(svc)
		if !ok || err != nil {
			continue
		}
		for _, p := range pods {
			if sel.Matches(labels.Set(p.Labels)) {
				c.enqueue(svc.Namespace, svc.Name)
				break
			}
		}
	}
}

func asService(obj any) *v1.Service {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	svc, _ := obj.(*v1.Service)
	return svc
}

func (c *Controller) enqueue(ns, name string) { c.queue.Add(ns + "/" + name) }

// maxRetries bounds the retries of one Service's sync (about 3 minutes of
// backoff); the informers' resync tries again later.
const maxRetries = 15

func (c *Controller) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	err := c.sync(ctx, key)
	switch {
	case err == nil:
		c.queue.Forget(key)
	case ctx.Err() != nil:
	case c.queue.NumRequeues(key) < maxRetries:
		klog.FromContext(ctx).Error(err, "Retrying with backoff", "service", key, "retries", c.queue.NumRequeues(key))
		c.queue.AddRateLimited(key)
	default:
		klog.FromContext(ctx).Error(err, "Giving up until the next resync", "service", key)
		c.queue.Forget(key)
	}
	return true
}

// sync makes the Service's slices what its pods say: creates and updates
// the slices it should have and deletes the rest of this controller's.
func (c *Controller) sync(ctx context.Context, key string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ns, name, _ := strings.Cut(key, "/")
	var want []*discoveryv1.EndpointSlice
	svc, err := c.services.Services(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		c.report(key, nil, nil)
	case err != nil:
		return err
	default:
		sel, ok, err := Selector(svc)
		switch {
		case err != nil:
			// Nothing is published for a Service that says something
			// else than it means: the event says what to fix.
			c.report(key, svc, []string{err.Error() + "; k8sm publishes no endpoints for it until this is fixed"})
		case ok:
			pods, err := c.selected(ns, sel)
			if err != nil {
				return err
			}
			var problems []string
			want, problems = Desired(svc, pods)
			c.report(key, svc, problems)
		default:
			c.report(key, nil, nil)
		}
	}
	have, err := c.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: taskinfo.HostPrivateManagedBy}))
	if err != nil {
		return err
	}
	return c.apply(ctx, ns, want, have)
}

// selected lists the pods of ns the selector names.
func (c *Controller) selected(ns string, sel labels.Selector) ([]*v1.Pod, error) {
	objs, err := c.pods.ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return nil, fmt.Errorf("listing pods of namespace %s: %w", ns, err)
	}
	var out []*v1.Pod
	for _, o := range objs {
		if p, ok := o.(*v1.Pod); ok && sel.Matches(labels.Set(p.Labels)) {
			out = append(out, p)
		}
	}
	return out, nil
}

// apply writes the difference between the slices wanted and those there.
func (c *Controller) apply(ctx context.Context, ns string, want, have []*discoveryv1.EndpointSlice) error {
	api := c.cfg.Client.DiscoveryV1().EndpointSlices(ns)
	byName := map[string]*discoveryv1.EndpointSlice{}
	for _, s := range have {
		byName[s.Name] = s
	}
	for _, w := range want {
		h, ok := byName[w.Name]
		delete(byName, w.Name)
		switch {
		case !ok:
			if _, err := api.Create(ctx, w, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("creating EndpointSlice %s/%s: %w", ns, w.Name, err)
			}
		case !same(h, w):
			u := h.DeepCopy()
			u.Labels, u.OwnerReferences, u.Endpoints, u.Ports = w.Labels, w.OwnerReferences, w.Endpoints, w.Ports
			if _, err := api.Update(ctx, u, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("updating EndpointSlice %s/%s: %w", ns, w.Name, err)
			}
		}
	}
	for _, h := range byName {
		err := api.Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting EndpointSlice %s/%s: %w", ns, h.Name, err)
		}
	}
	return nil
}

func same(h, w *discoveryv1.EndpointSlice) bool {
	return h.AddressType == w.AddressType &&
		equality.Semantic.DeepEqual(h.Labels, w.Labels) &&
		equality.Semantic.DeepEqual(h.OwnerReferences, w.OwnerReferences) &&
		equality.Semantic.DeepEqual(h.Endpoints, w.Endpoints) &&
		equality.Semantic.DeepEqual(h.Ports, w.Ports)
}

// report records the Service's problems as Warning events, each set once
// (the next sync with the same problems records nothing).
func (c *Controller) report(key string, svc *v1.Service, problems []string) {
	msg := strings.Join(problems, "\n")
	c.mu.Lock()
	last := c.reported[key]
	if msg == "" {
		delete(c.reported, key)
	} else {
		c.reported[key] = msg
	}
	c.mu.Unlock()
	if svc == nil || msg == "" || msg == last {
		return
	}
	reason := ReasonPodWithoutHostPort
	if _, _, err := Selector(svc); err != nil {
		reason = ReasonInvalid
	}
	for _, p := range problems {
		c.recorder.Event(svc, v1.EventTypeWarning, reason, p)
	}
}
