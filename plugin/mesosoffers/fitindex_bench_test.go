package mesosoffers

import (
	"testing"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// BenchmarkLaunchMarkCrossing is what one launch costs the fit index at
// 1,000 agents (500 offered, the bench's pod shape), as in a burst: the
// shape's set was handed to the scheduler (PreFilter of the next pod), and
// Bind's launch mark moves the agent out of the shape under the mirror's
// lock; the mark's end moves it back, after the next PreFilter handed the
// set out again. Those locks are the ones PreFilter and Reserve take in
// the serial cycle. Each crossing copied the 500-host set until the index
// kept changes to a handed-out set aside (fitShape.pending).
//
//	go test -run '^$' -bench LaunchMarkCrossing -benchmem ./plugin/mesosoffers
func BenchmarkLaunchMarkCrossing(b *testing.B) {
	c := newBenchCluster(b, 1000)
	m := c.pl.mirror
	d, err := podresources.FromPod(benchPod(0, 0))
	if err != nil {
		b.Fatal(err)
	}
	d = d.WithDefaults(podresources.DefaultPodScalars)
	if n := m.fitting(d).Len(); n != 500 {
		b.Fatalf("%d agents hold the bench pod, want 500", n)
	}
	host := "agent-00000"
	b.ReportAllocs()
	for b.Loop() {
		m.fitting(d) // handed out
		mk, _ := m.launching(host, "")
		m.fitting(d)
		if a := m.launched(mk, 0); a == nil || !a.holds(d) {
			b.Fatalf("agent %s not back after its launch failed", host)
		}
	}
}
