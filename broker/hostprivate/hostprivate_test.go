package hostprivate

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// start runs the controller on a fake API server holding objs, with a pod
// informer of its own standing in for the pod controller's.
func start(t *testing.T, objs ...any) (*fake.Clientset, *Controller) {
	t.Helper()
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	pods := informers.NewSharedInformerFactory(client, 0)
	c := New(Config{Client: client, Pods: pods.Core().V1().Pods().Informer()})
	pods.Start(ctx.Done())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for _, o := range objs {
		create(t, client, o)
	}
	return client, c
}

func create(t *testing.T, client *fake.Clientset, o any) {
	t.Helper()
	var err error
	switch o := o.(type) {
	case *v1.Service:
		_, err = client.CoreV1().Services(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
	case *v1.Pod:
		_, err = client.CoreV1().Pods(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
	case *discoveryv1.EndpointSlice:
		_, err = client.DiscoveryV1().EndpointSlices(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// published lists the endpoints of every slice in ns (endpoints()'s
// lines), the stock controller's too.
func published(t *testing.T, client *fake.Clientset) []string {
	t.Helper()
	l, err := client.DiscoveryV1().EndpointSlices("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ss []*discoveryv1.EndpointSlice
	for i := range l.Items {
		ss = append(ss, &l.Items[i])
	}
	out := endpoints(ss)
	slices.Sort(out)
	return out
}

// waitPublished waits (a deadline, not a measurement) until the endpoints
// in ns are want.
func waitPublished(t *testing.T, client *fake.Clientset, what string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		got = published(t, client)
		return slices.Equal(got, want), nil
	})
	if err != nil {
		t.Fatalf("%s: endpoints\n%s\nwant\n%s", what, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSlicesFollowThePods: the Service's slices appear at the agent's
// address and allocated host port, follow a pod that runs again on
// another agent and port, go when it ends, and are put back when someone
// deletes them; a slice of the stock controller is left alone.
func TestSlicesFollowThePods(t *testing.T) {
	stock := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "other-abc", Labels: map[string]string{
			discoveryv1.LabelServiceName: "other", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.88.1.5"}, NodeName: ptr.To("n"),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			TargetRef:  &v1.ObjectReference{Name: "other-pod"}}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(v1.ProtocolTCP), Port: ptr.To(int32(8080))}},
	}
	stockLine := "http 10.88.1.5:8080 true/true/false n other-pod"
	client, _ := start(t, stock, hostPrivateService(),
		webPod("web-1", "agent-1", "10.87.0.11", 31007),
		// Another app's pod: not selected.
		webPod("db-1", "agent-1", "10.87.0.11", 31001, func(p *v1.Pod) { p.Labels = map[string]string{"app": "db"} }))
	waitPublished(t, client, "the first pod", stockLine, "http 10.87.0.11:31007 true/true/false agent-1 web-1")

	// A second pod starting: not ready, then ready.
	p2 := webPod("web-2", "agent-2", "", 31010, func(p *v1.Pod) { p.Status.Conditions = nil })
	create(t, client, p2)
	p2.Status.HostIP = "10.87.0.12"
	updatePod(t, client, p2)
	waitPublished(t, client, "the second pod started", stockLine,
		"http 10.87.0.11:31007 true/true/false agent-1 web-1", "http 10.87.0.12:31010 false/false/false agent-2 web-2")
	p2.Status.Conditions = []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}}
	updatePod(t, client, p2)
	waitPublished(t, client, "the second pod ready", stockLine,
		"http 10.87.0.11:31007 true/true/false agent-1 web-1", "http 10.87.0.12:31010 true/true/false agent-2 web-2")

	// web-1's task moves: its pod ends and its replacement runs on agent-2.
	del(t, client, "web-1")
	create(t, client, webPod("web-3", "agent-2", "10.87.0.12", 31011))
	waitPublished(t, client, "web-1 replaced on agent-2", stockLine,
		"http 10.87.0.12:31010 true/true/false agent-2 web-2", "http 10.87.0.12:31011 true/true/false agent-2 web-3")

	// Someone deletes the controller's slices: they come back.
	l, _ := client.DiscoveryV1().EndpointSlices("ns").List(context.Background(), metav1.ListOptions{
		LabelSelector: discoveryv1.LabelManagedBy + "=" + taskinfo.HostPrivateManagedBy})
	for _, s := range l.Items {
		if err := client.DiscoveryV1().EndpointSlices("ns").Delete(context.Background(), s.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	waitPublished(t, client, "the slices put back", stockLine,
		"http 10.87.0.12:31010 true/true/false agent-2 web-2", "http 10.87.0.12:31011 true/true/false agent-2 web-3")

	// A pod that ends leaves; the last one's end leaves no slice.
	p2.Status.Phase = v1.PodFailed
	updatePod(t, client, p2)
	del(t, client, "web-3")
	waitPublished(t, client, "every pod ended", stockLine)
}

// TestServiceNoLongerHostPrivate: a Service whose annotation is removed, or
// becomes invalid, keeps no slice of k8sm's, and an invalid one gets an
// event saying what to fix.
func TestServiceNoLongerHostPrivate(t *testing.T) {
	svc := hostPrivateService()
	client, _ := start(t, svc, webPod("web-1", "agent-1", "10.87.0.11", 31007))
	waitPublished(t, client, "the pod", "http 10.87.0.11:31007 true/true/false agent-1 web-1")

	svc.Spec.Selector = map[string]string{"app": "web"}
	if _, err := client.CoreV1().Services("ns").Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, client, "an invalid Service")
	err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := client.CoreV1().Events("ns").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Reason == ReasonInvalid && ev.InvolvedObject.Name == "web" && strings.Contains(ev.Message, "remove spec.selector") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no %s event on the Service saying to remove spec.selector: %v", ReasonInvalid, err)
	}

	svc.Spec.Selector = nil
	if _, err := client.CoreV1().Services("ns").Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, client, "fixed", "http 10.87.0.11:31007 true/true/false agent-1 web-1")
	svc.Annotations = nil
	if _, err := client.CoreV1().Services("ns").Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPublished(t, client, "no longer host-private")
}

func updatePod(t *testing.T, client *fake.Clientset, p *v1.Pod) {
	t.Helper()
	if _, err := client.CoreV1().Pods(p.Namespace).Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func del(t *testing.T, client *fake.Clientset, pod string) {
	t.Helper()
	if err := client.CoreV1().Pods("ns").Delete(context.Background(), pod, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}
