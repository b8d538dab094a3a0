package framework_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/apimachinery/pkg/types"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// BenchmarkReserveLaunch measures what the scheduler plugin waits for per
// pod: a Reserve and a Launch over gRPC, the Launch returning once the
// master accepted the ACCEPT. Waiting for the next offer is not counted in
// its times; cpu-µs/op is the process's CPU per pod over the whole loop,
// that wait and the in-process master's work included.
func BenchmarkReserveLaunch(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	e := newEnvWith(b, ctx, "cpus:100000;mem:10000000;disk:10000;ports:[31000-32000]", 5*time.Millisecond)
	var reserve, launch time.Duration
	n := 0
	cpu0 := processCPU(b)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		name := fmt.Sprintf("bench-%d", i)
		uid := types.UID(fmt.Sprintf("bench-uid-%d", i))
		data := podBytes(b, name, uid, false)
		for {
			views, _ := e.cache.Snapshot()
			if len(views) == 1 && !views[0].Available.Total().IsZero() {
				break
			}
			time.Sleep(time.Millisecond)
		}
		b.StartTimer()
		t0 := time.Now()
		resp, err := e.broker.Reserve(ctx, &brokerv1.ReserveRequest{
			Pod:      &brokerv1.PodRef{Uid: string(uid), Namespace: "default", Name: name},
			NodeName: "node-a",
			Demand:   &brokerv1.Demand{Cpus: 0.01, MemMb: 1},
		})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		reserve += t1.Sub(t0)
		if _, err := e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: resp.GetReservation().GetId(), Pod: data, PodContentType: "application/json"}); err != nil {
			b.Fatal(err)
		}
		launch += time.Since(t1)
		n++
	}
	cpu := processCPU(b) - cpu0
	b.ReportMetric(float64(reserve.Microseconds())/float64(n), "reserve-µs/op")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/op")
	b.ReportMetric(float64(launch.Microseconds())/float64(n), "launch-µs/op")
	e.caller.mu.Lock()
	b.ReportMetric(float64(e.caller.accepts.Microseconds())/float64(e.caller.n), "accept-µs/op")
	e.caller.mu.Unlock()
}

// BenchmarkLaunchBatchWindow measures one Launch (gRPC to the broker, the
// batch, the ACCEPT to the in-process master) with the broker's default
// batch window, 100ms: "alone", the agent's only reservation; "beside-
// released", the agent holds a second reservation that is released 2 ms
// after the Launch was sent, without ever launching (its pod's bind failed
// before it, or the pod was deleted). Only the Launch is timed, the 2 ms
// included.
func BenchmarkLaunchBatchWindow(b *testing.B) {
	for _, besideReleased := range []bool{false, true} {
		name := "alone"
		if besideReleased {
			name = "beside-released"
		}
		b.Run(name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			e := startBroker(b, ctx, startSim(b, "cpus:100000;mem:10000000;disk:10000;ports:[31000-32000]", 5*time.Millisecond), brokerOpts{batchWindow: 100 * time.Millisecond})
			reserve := func(i int, who string) (string, []byte) {
				name := fmt.Sprintf("bench-%d-%s", i, who)
				uid := types.UID(fmt.Sprintf("bench-uid-%d-%s", i, who))
				req := &brokerv1.ReserveRequest{
					Pod:      &brokerv1.PodRef{Uid: string(uid), Namespace: "default", Name: name},
					NodeName: "node-a",
					Demand:   &brokerv1.Demand{Cpus: 0.01, MemMb: 1},
				}
				resp, err := e.broker.Reserve(ctx, req)
				for status.Code(err) == codes.Unavailable { // not serving yet
					time.Sleep(time.Millisecond)
					resp, err = e.broker.Reserve(ctx, req)
				}
				if err != nil {
					b.Fatal(err)
				}
				return resp.GetReservation().GetId(), podBytes(b, name, uid, false)
			}
			var launch time.Duration
			n := 0
			for i := 0; b.Loop(); i++ {
				b.StopTimer()
				for {
					views, _ := e.cache.Snapshot()
					if len(views) == 1 && !views[0].Available.Total().IsZero() {
						break
					}
					time.Sleep(time.Millisecond)
				}
				id, data := reserve(i, "a")
				var other string
				if besideReleased {
					other, _ = reserve(i, "b")
				}
				b.StartTimer()
				t0 := time.Now()
				done := make(chan error, 1)
				go func() {
					_, err := e.broker.Launch(ctx, &brokerv1.LaunchRequest{ReservationId: id, Pod: data, PodContentType: "application/json"})
					done <- err
				}()
				if besideReleased {
					time.Sleep(2 * time.Millisecond)
					if _, err := e.broker.Unreserve(ctx, &brokerv1.UnreserveRequest{ReservationId: other}); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				launch += time.Since(t0)
				n++
			}
			b.ReportMetric(float64(launch.Microseconds())/1000/float64(n), "launch-ms/op")
		})
	}
}

// processCPU is the CPU time (user and system) every thread of the process
// has used so far.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
