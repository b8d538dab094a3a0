// Package zktest holds the tests that need a real ZooKeeper, kept apart so
// the rest of the simulator's tests build without the cluster tooling.
package zktest

import (
	"context"
	"encoding/json"
	"net/http"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli"
	"github.com/mesos/mesos-go/api/v1/lib/httpcli/httpsched"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler/calls"

	"github.com/k8sm/k8sm/hack/cluster/zktesting"
	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/simtest"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
	"github.com/k8sm/k8sm/hack/mesos-sim/zkdetect"
)

func startZK(t *testing.T) string { return zktesting.Start(t) }

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// TestZooKeeperElection: masters register json.info_ znodes holding their
// MasterInfo; the lowest sequence leads; non-leaders answer 307 with a
// scheme-relative Location; killing the leader moves leadership.
func TestZooKeeperElection(t *testing.T) {
	zkAddr := startZK(t)
	zkURL := "zk://" + zkAddr + "/mesos"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	s, err := mesossim.Start(ctx, mesossim.Config{
		Masters: 3,
		ZK:      zkURL,
		Master:  master.Config{HeartbeatInterval: 300 * time.Millisecond, AllocationInterval: 50 * time.Millisecond},
		Agents:  []agent.Config{{Resources: mustRes(t, "cpus:2;mem:1024"), Hollow: true}},
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// The znodes, as a Mesos client would read them.
	conn, _, err := zk.Connect([]string{zkAddr}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	children, _, err := conn.Children("/mesos")
	if err != nil {
		t.Fatal(err)
	}
	var infos []string
	for _, c := range children {
		if strings.HasPrefix(c, "json.info_") {
			infos = append(infos, c)
		}
	}
	if len(infos) != 3 {
		t.Fatalf("znodes %v, want 3 json.info_ entries", children)
	}
	lowest := infos[0]
	for _, c := range infos {
		if c < lowest {
			lowest = c
		}
	}
	b, _, err := conn.Get(path.Join("/mesos", lowest))
	if err != nil {
		t.Fatal(err)
	}
	var info mesos.MasterInfo
	if err := json.Unmarshal(b, &info); err != nil {
		t.Fatalf("znode data %q is not MasterInfo JSON: %v", b, err)
	}
	leader := s.Leader()
	if leader == nil || info.ID != leader.ID() || info.Address.GetPort() == 0 {
		t.Fatalf("lowest znode names %s, leader is %v", info.ID, leader)
	}

	// Every non-leader redirects with a scheme-relative Location.
	for _, m := range s.Masters() {
		if m == leader {
			continue
		}
		waitFor(t, ctx, "follower to learn the leader", func() bool {
			resp, err := noRedirect().Post("http://"+m.Addr()+"/api/v1/scheduler", wire.JSON, strings.NewReader("{}"))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusTemporaryRedirect &&
				resp.Header.Get("Location") == "//localhost:"+strconv.Itoa(int(info.GetPort()))+"/api/v1/scheduler"
		})
	}

	// A scheduler subscribes to the leader and then the leader dies.
	sched, err := simtest.Subscribe(ctx, "http://"+leader.Addr(), wire.Protobuf, mesos.FrameworkInfo{User: "u", Name: "zk"})
	if err != nil {
		t.Fatal(err)
	}
	defer sched.Close()
	if _, err := sched.Next(ctx, scheduler.Event_OFFERS); err != nil {
		t.Fatal(err)
	}
	old := leader.ID()
	if err := s.FailoverMaster(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "a new leader", func() bool { l := s.Leader(); return l != nil && l.ID() != old })
	waitFor(t, ctx, "old stream to end", sched.Closed)
	// The new leader has the agent back and offers it to a new subscription.
	sched2, err := simtest.Subscribe(ctx, s.MasterURL(), wire.JSON, mesos.FrameworkInfo{User: "u", Name: "zk2"})
	if err != nil {
		t.Fatal(err)
	}
	defer sched2.Close()
	if _, err := sched2.Next(ctx, scheduler.Event_OFFERS); err != nil {
		t.Fatal(err)
	}
}

// TestDetectNoLeader: with no master registered, a master that knows no leader answers 503.
func TestDetectNoLeader(t *testing.T) {
	zkAddr := startZK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := master.New(master.Config{})
	m.SetLeader(nil)
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	resp, err := noRedirect().Post("http://"+m.Addr()+"/api/v1/scheduler", wire.JSON, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("no leader: %d, want 503", resp.StatusCode)
	}
	got := make(chan *mesos.MasterInfo, 10)
	if err := zkdetect.Watch(ctx, "zk://"+zkAddr+"/mesos", func(i *mesos.MasterInfo) { got <- i }); err != nil {
		t.Fatal(err)
	}
	if first := <-got; first != nil {
		t.Fatalf("leader %v before any registration", first)
	}
	reg, err := zkdetect.Register("zk://"+zkAddr+"/mesos", m.Info())
	if err != nil {
		t.Fatal(err)
	}
	if l := <-got; l == nil || l.ID != m.ID() {
		t.Fatalf("detected %v", l)
	}
	reg.Close()
	if l := <-got; l != nil {
		t.Fatalf("leader %v after withdrawal", l)
	}
}

func mustRes(t *testing.T, spec string) []mesos.Resource {
	rs, err := mesossim.ParseResources(spec)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestMesosGoFollowsRedirect: mesos-go's httpsched, pointed at a follower,
// follows the 307 to the leader and subscribes there.
func TestMesosGoFollowsRedirect(t *testing.T) {
	zkAddr := startZK(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	s, err := mesossim.Start(ctx, mesossim.Config{
		Masters: 2,
		ZK:      "zk://" + zkAddr + "/mesos",
		Master:  master.Config{HeartbeatInterval: 300 * time.Millisecond, AllocationInterval: 50 * time.Millisecond},
		Agents:  []agent.Config{{Resources: mustRes(t, "cpus:2;mem:1024"), Hollow: true}},
		WorkDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var follower *master.Master
	for _, m := range s.Masters() {
		if m != s.Leader() {
			follower = m
		}
	}
	waitFor(t, ctx, "follower to know the leader", func() bool { return !follower.Elected() && follower.State()["leader"] != nil })
	cli := httpcli.New(
		httpcli.Endpoint("http://"+follower.Addr()+"/api/v1/scheduler"),
		httpcli.Codec(codecs.ByMediaType[codecs.MediaTypeProtobuf]),
	)
	caller := httpsched.NewCaller(cli)
	resp, err := caller.Call(ctx, calls.Subscribe(&mesos.FrameworkInfo{User: "u", Name: "redirected"}))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	for {
		var ev scheduler.Event
		if err := resp.Decode(&ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type == scheduler.Event_OFFERS {
			return
		}
	}
}
