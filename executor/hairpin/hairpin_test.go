package hairpin

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

func pod(name, node string, containerPort, hostPort int32, wildcard bool) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "web",
			Ports: []v1.ContainerPort{{ContainerPort: containerPort, HostPort: hostPort}}}}},
		Status: v1.PodStatus{Phase: v1.PodRunning, PodIP: "127.0.0.1"},
	}
	if wildcard {
		p.Spec.Containers[0].Ports[0].HostPort = 0
		p.Annotations = map[string]string{
			taskinfo.WildcardPortsAnnotation: "true",
			taskinfo.HostPortsAnnotation:     fmt.Sprintf(`[{"container":"web","containerPort":%d,"protocol":"TCP","hostPort":%d}]`, containerPort, hostPort),
		}
	}
	return p
}

// TestDesired: every TCP host port of the pods the kubelet runs, fixed or
// wildcard (applied by the executor), relays to the pod's address and
// container port; pods not running per the API server, or on the host's
// network, get none — and a host port an edited annotation names but the
// kubelet's pod does not is never taken.
func TestDesired(t *testing.T) {
	ended := pod("ended", "agent-1", 8080, 31003, false)
	ended.Status.Phase = v1.PodFailed
	starting := pod("starting", "agent-1", 8080, 31004, false)
	starting.Status.PodIP = ""
	hostNet := pod("hostnet", "agent-1", 31005, 31005, false)
	hostNet.Spec.HostNetwork = true
	udp := pod("udp", "agent-1", 53, 31006, false)
	udp.Spec.Containers[0].Ports[0].Protocol = v1.ProtocolUDP
	edited := pod("edited", "agent-1", 8080, 0, false)
	edited.Annotations = map[string]string{taskinfo.HostPortsAnnotation: `[{"container":"web","containerPort":8080,"protocol":"TCP","hostPort":22}]`}
	kubelet := []*v1.Pod{pod("fixed", "agent-1", 8080, 31001, false), pod("wild", "agent-1", 9090, 31002, false),
		ended, starting, hostNet, udp, edited, pod("gone-from-api", "agent-1", 8080, 31008, false)}
	api := map[types.UID]*v1.Pod{}
	for _, p := range kubelet[:len(kubelet)-1] {
		api[p.UID] = p
	}
	got := Desired(kubelet, api, "10.87.0.11")
	want := map[string]string{"10.87.0.11:31001": "127.0.0.1:8080", "10.87.0.11:31002": "127.0.0.1:9090"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Desired = %v, want %v", got, want)
	}
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// startedKubelet records the sets the relays pass on.
type startedKubelet struct{ sets chan []*v1.Pod }

func (k startedKubelet) Start(ctx context.Context, _ string, pods <-chan []*v1.Pod) error {
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-pods:
				k.sets <- s
			}
		}
	}()
	return nil
}

// TestRelaysWhileThePodRuns: a connection to NodeIP:hostPort reaches the
// pod while the kubelet runs it, and the port is let go when the kubelet
// no longer does; the kubelet gets every set.
func TestRelaysWhileThePodRuns(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "hello from the pod") }))
	defer srv.Close()
	_, sport, _ := net.SplitHostPort(srv.Listener.Addr().String())
	containerPort, _ := strconv.Atoi(sport)
	hostPort := freePort(t)
	web := pod("web", "agent-1", int32(containerPort), hostPort, false)
	client := fake.NewClientset(web)
	r, err := New(client, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(client, ""); err == nil || !strings.Contains(err.Error(), "--node-ip") {
		t.Errorf("New without a node IP: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inner := startedKubelet{sets: make(chan []*v1.Pod, 10)}
	pods := make(chan []*v1.Pod, 1)
	if err := r.Kubelet(inner).Start(ctx, "agent-1", pods); err != nil {
		t.Fatal(err)
	}
	pods <- []*v1.Pod{web}
	if got := <-inner.sets; len(got) != 1 || got[0].Name != "web" {
		t.Errorf("the kubelet got %v", got)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", hostPort)
	var last string
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := http.Get(url)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = string(b)
		return last == "hello from the pod", nil
	}); err != nil {
		t.Fatalf("%s did not relay to the pod: %s", url, last)
	}

	pods <- nil
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", hostPort))
		if err != nil {
			return true, nil
		}
		c.Close()
		return false, nil
	}); err != nil {
		t.Errorf("host port %d still taken after the kubelet stopped the pod", hostPort)
	}
}
