package mesossim_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/scheduler"
	"golang.org/x/sys/unix"

	mesossim "github.com/k8sm/k8sm/hack/mesos-sim"
	"github.com/k8sm/k8sm/hack/mesos-sim/agent"
	"github.com/k8sm/k8sm/hack/mesos-sim/master"
	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// BenchmarkAccept is the master's side of k8sm-bench's k8sm phase, in one
// process as there: 1,000 hollow agents with the bench's resources, the
// bench master's allocation interval, and one framework subscribed as the
// broker subscribes (protobuf, checkpointing, PARTITION_AWARE, MULTI_ROLE)
// that holds every offer, launches one pod-sized task per ACCEPT on the
// shared executor and acknowledges every update from goroutines of its
// own. Each op is one ACCEPT, timed from the POST to the 202; waiting for an
// offer is not. accept-p50/p99-ms are over the run's ACCEPTs; cpu-µs/task
// is the whole process's CPU (master, agents, checkpoints, the client) from
// the first ACCEPT until every task's TASK_RUNNING was acknowledged,
// divided by the tasks. Run with a fixed -benchtime (e.g. 2000x): the
// checkpoints grow with the tasks per agent.
func BenchmarkAccept(b *testing.B) {
	for _, checkpoint := range []bool{true, false} {
		b.Run(fmt.Sprintf("agents=1000/checkpoint=%v", checkpoint), func(b *testing.B) {
			benchAccept(b, 1000, checkpoint)
		})
	}
}

func benchAccept(b *testing.B, n int, checkpoint bool) {
	res, err := mesossim.ParseResources("cpus:8;mem:32768;disk:100000;ports:[31000-32000]")
	if err != nil {
		b.Fatal(err)
	}
	agents := make([]agent.Config, n)
	for i := range agents {
		agents[i] = agent.Config{Hostname: fmt.Sprintf("bench-agent-%05d", i), Resources: res, Hollow: true, HollowNoCheckpoint: !checkpoint}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s, err := mesossim.Start(ctx, mesossim.Config{
		WorkDir: b.TempDir(),
		Master:  master.Config{AllocationInterval: time.Second},
		Agents:  agents,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	f := subscribeBench(b, ctx, s.MasterURL())

	taskRes, err := mesossim.ParseResources("cpus:0.1;mem:64")
	if err != nil {
		b.Fatal(err)
	}
	execRes, err := mesossim.ParseResources("cpus:0.1;mem:32")
	if err != nil {
		b.Fatal(err)
	}
	role := "*"
	for _, rs := range [][]mesos.Resource{taskRes, execRes} {
		for i := range rs {
			rs[i].AllocationInfo = &mesos.Resource_AllocationInfo{Role: &role}
		}
	}
	// A pod as the broker hands it to its executor: a few KiB of JSON.
	podData := []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"name":"bench","namespace":"default","labels":{"run":"bench"}},"spec":{"containers":[{"name":"c","image":"registry.k8s.io/pause:3.10","resources":{"requests":{"cpu":"100m","memory":"64Mi"}}}]},"pad":"` + strings.Repeat("x", 2500) + `"}`)
	cmd := "/usr/local/bin/k8sm-executor"
	execInfo := mesos.ExecutorInfo{ExecutorID: mesos.ExecutorID{Value: "k8sm-executor"}, Name: &cmd, Command: &mesos.CommandInfo{Value: &cmd}, Resources: execRes}

	var lat []time.Duration
	launched := 0
	var cpu0 time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		o := f.nextOffer(b, ctx)
		id := fmt.Sprintf("bench-%d", i)
		exec := execInfo
		call := &scheduler.Call{Type: scheduler.Call_ACCEPT, FrameworkID: &mesos.FrameworkID{Value: f.id}, Accept: &scheduler.Call_Accept{
			OfferIDs: []mesos.OfferID{o.ID},
			Operations: []mesos.Offer_Operation{{Type: mesos.Offer_Operation_LAUNCH, Launch: &mesos.Offer_Operation_Launch{TaskInfos: []mesos.TaskInfo{{
				Name: id, TaskID: mesos.TaskID{Value: id}, AgentID: o.AgentID, Resources: taskRes, Executor: &exec, Data: podData,
			}}}}},
			Filters: &mesos.Filters{RefuseSeconds: ptr(1.0)},
		}}
		body, err := wire.Encode(wire.Protobuf, call)
		if err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			cpu0 = processCPUTime(b)
		}
		b.StartTimer()
		t0 := time.Now()
		if err := f.post(ctx, body); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
		launched++
	}
	b.StopTimer()
	f.waitRunning(b, ctx, launched)
	cpu := processCPUTime(b) - cpu0
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	b.ReportMetric(pct(0.5), "accept-p50-ms")
	b.ReportMetric(pct(0.99), "accept-p99-ms")
	b.ReportMetric(float64(sum.Microseconds())/1000/float64(len(lat)), "accept-mean-ms")
	b.ReportMetric(float64(cpu.Microseconds())/float64(launched), "cpu-µs/task")
}

func ptr[T any](v T) *T { return &v }

// benchFramework is a raw subscription that keeps only what the benchmark
// needs: the offers not yet used, and the count of TASK_RUNNING updates
// acknowledged (simtest.Scheduler keeps every event, which at this scale
// is the benchmark's largest cost).
type benchFramework struct {
	url, stream, id string
	client          *http.Client

	mu      sync.Mutex
	offers  []mesos.Offer
	running int
	err     error
	wake    chan struct{}
	acks    chan mesos.TaskStatus
}

func subscribeBench(b *testing.B, ctx context.Context, url string) *benchFramework {
	b.Helper()
	role := "*"
	checkpoint := true
	failover := 3600.0
	info := mesos.FrameworkInfo{User: "root", Name: "bench", Roles: []string{role}, Checkpoint: &checkpoint, FailoverTimeout: &failover,
		Capabilities: []mesos.FrameworkInfo_Capability{
			{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE},
			{Type: mesos.FrameworkInfo_Capability_RESERVATION_REFINEMENT},
			{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE},
		}}
	body, err := wire.Encode(wire.Protobuf, &scheduler.Call{Type: scheduler.Call_SUBSCRIBE, Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &info}})
	if err != nil {
		b.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/scheduler", bytes.NewReader(body))
	req.Header.Set("Content-Type", wire.Protobuf)
	req.Header.Set("Accept", wire.Protobuf)
	// A client of its own for the stream, so that calls never wait for its connection.
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		b.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("subscribing: status %d", resp.StatusCode)
	}
	f := &benchFramework{url: url, stream: resp.Header.Get("Mesos-Stream-Id"), wake: make(chan struct{}, 1), acks: make(chan mesos.TaskStatus, 100000),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}}
	subscribed := make(chan string, 1)
	go f.read(resp.Body, subscribed)
	select {
	case f.id = <-subscribed:
	case <-ctx.Done():
		b.Fatal("no SUBSCRIBED")
	}
	for range 4 { // the broker acknowledges from goroutines of its own too
		go f.acknowledge(ctx)
	}
	b.Cleanup(func() { resp.Body.Close(); close(f.acks) })
	return f
}

func (f *benchFramework) read(body io.Reader, subscribed chan<- string) {
	rd := wire.NewReader(body, 0)
	for {
		rec, err := rd.ReadRecord()
		var ev scheduler.Event
		if err == nil {
			err = wire.Decode(wire.Protobuf, rec, &ev)
		}
		if err != nil {
			f.mu.Lock()
			f.err = err
			f.mu.Unlock()
			f.signal()
			return
		}
		switch ev.Type {
		case scheduler.Event_SUBSCRIBED:
			subscribed <- ev.Subscribed.FrameworkID.Value
		case scheduler.Event_OFFERS:
			f.mu.Lock()
			f.offers = append(f.offers, ev.Offers.Offers...)
			f.mu.Unlock()
			f.signal()
		case scheduler.Event_RESCIND:
			f.mu.Lock()
			f.offers = slices.DeleteFunc(f.offers, func(o mesos.Offer) bool { return o.ID == ev.Rescind.OfferID })
			f.mu.Unlock()
		case scheduler.Event_UPDATE:
			st := ev.Update.Status
			if len(st.UUID) > 0 {
				f.acks <- st
			} else if st.GetState() != mesos.TASK_RUNNING {
				f.mu.Lock()
				f.err = fmt.Errorf("task %s: %s %s", st.TaskID.Value, st.GetState(), st.GetMessage())
				f.mu.Unlock()
				f.signal()
			}
		}
	}
}

func (f *benchFramework) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *benchFramework) acknowledge(ctx context.Context) {
	for st := range f.acks {
		call := &scheduler.Call{Type: scheduler.Call_ACKNOWLEDGE, FrameworkID: &mesos.FrameworkID{Value: f.id},
			Acknowledge: &scheduler.Call_Acknowledge{AgentID: *st.AgentID, TaskID: st.TaskID, UUID: st.UUID}}
		body, err := wire.Encode(wire.Protobuf, call)
		if err == nil {
			err = f.post(ctx, body)
		}
		f.mu.Lock()
		if err != nil && f.err == nil && ctx.Err() == nil {
			f.err = fmt.Errorf("acknowledging: %w", err)
		}
		if st.GetState() == mesos.TASK_RUNNING {
			f.running++
		} else if f.err == nil {
			f.err = fmt.Errorf("task %s: %s %s", st.TaskID.Value, st.GetState(), st.GetMessage())
		}
		f.mu.Unlock()
		f.signal()
	}
}

func (f *benchFramework) post(ctx context.Context, body []byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/api/v1/scheduler", bytes.NewReader(body))
	req.Header.Set("Content-Type", wire.Protobuf)
	req.Header.Set("Mesos-Stream-Id", f.stream)
	resp, err := f.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("status %d: %s", resp.StatusCode, msg)
	}
	return nil
}

// nextOffer takes the oldest offer held, waiting for one if none is.
func (f *benchFramework) nextOffer(b *testing.B, ctx context.Context) mesos.Offer {
	for {
		f.mu.Lock()
		err := f.err
		if err == nil && len(f.offers) > 0 {
			o := f.offers[0]
			f.offers = f.offers[1:]
			f.mu.Unlock()
			return o
		}
		f.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		select {
		case <-f.wake:
		case <-ctx.Done():
			b.Fatal("waiting for an offer:", ctx.Err())
		}
	}
}

func (f *benchFramework) waitRunning(b *testing.B, ctx context.Context, n int) {
	for {
		f.mu.Lock()
		done, err := f.running >= n, f.err
		f.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
		if done {
			return
		}
		select {
		case <-f.wake:
		case <-ctx.Done():
			b.Fatalf("waiting for %d tasks to run: %v", n, ctx.Err())
		}
	}
}

func processCPUTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
