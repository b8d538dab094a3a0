package allocator

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCycleFiltered is a cycle of the bench's master: 5,000 agents,
// each offered to the one framework, which declined them all with a
// filter (the master runs the cycle under its lock, so a call waits for
// it).
func BenchmarkCycleFiltered(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a := New()
			now := time.Now()
			for i := 0; i < n; i++ {
				a.AddAgent(fmt.Sprintf("agent-%05d", i), res(8, 16384, ""), nil)
			}
			a.AddFramework("f1", []string{"*"}, nil)
			for _, al := range a.Cycle(now) {
				a.Recover(al.FrameworkID, al.AgentID, al.Resources, time.Hour, now)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if got := a.Cycle(now); len(got) != 0 {
					b.Fatalf("%d allocations of filtered agents", len(got))
				}
			}
		})
	}
}
