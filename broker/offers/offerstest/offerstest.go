// Package offerstest makes the offers and heap readings the broker's memory
// benchmarks share, so that the offer cache's and the framework's figures
// are of the same offers.
package offerstest

import (
	"fmt"
	"runtime"

	mesos "github.com/mesos/mesos-go/api/v1/lib"

	"github.com/k8sm/k8sm/pkg/podresources"
)

// SimOffers are n offers shaped as mesos-sim's master sends them to a
// MULTI_ROLE framework for k8sm-bench's hollow agents (cpus:8;mem:32768;
// disk:100000;ports:[31000-32000], attribute rack:r1): resources with
// allocation info, the agent's URL, the offer's allocation info.
func SimOffers(n int) []mesos.Offer {
	role := "*"
	out := make([]mesos.Offer, n)
	for i := range out {
		host := fmt.Sprintf("hollow-%05d", i)
		ip := fmt.Sprintf("127.0.%d.%d", i/250, i%250+1)
		path := "/slave(1)"
		out[i] = mesos.Offer{
			ID:             mesos.OfferID{Value: fmt.Sprintf("2f1c7f3e-5a3e-4b1e-9d2c-7a1f0e6b9c11-O%d", i)},
			FrameworkID:    mesos.FrameworkID{Value: "2f1c7f3e-5a3e-4b1e-9d2c-7a1f0e6b9c11-0000"},
			AgentID:        mesos.AgentID{Value: fmt.Sprintf("2f1c7f3e-5a3e-4b1e-9d2c-7a1f0e6b9c11-S%d", i)},
			Hostname:       host,
			URL:            &mesos.URL{Scheme: "http", Address: mesos.Address{Hostname: &host, IP: &ip, Port: 5051}, Path: &path},
			Attributes:     []mesos.Attribute{{Name: "rack", Type: mesos.TEXT, Text: &mesos.Value_Text{Value: "r1"}}},
			AllocationInfo: &mesos.Resource_AllocationInfo{Role: &role},
			Resources: podresources.ToMesos(podresources.Resources{
				Scalars: podresources.Scalars{CPUs: podresources.MilliFromFloat(8), MemMB: podresources.MilliFromFloat(32768), DiskMB: podresources.MilliFromFloat(100000)},
				Ports:   podresources.NewRanges(podresources.Range{Begin: 31000, End: 32000}),
			}, role),
		}
	}
	return out
}

// LiveHeap is the heap in use after a full collection (two: the first
// may leave what finalizers free).
func LiveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
