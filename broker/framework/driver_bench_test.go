package framework

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// BenchmarkPodTasks is the launcher's look-up of a pod's earlier attempts,
// once per Launch, under the lock the status workers share, with the live
// tasks of the bench's sizes.
func BenchmarkPodTasks(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("tasks-%d", n), func(b *testing.B) {
			d := NewDriver(nil, nil)
			for i := range n {
				d.taskAt(taskinfo.TaskID(types.UID(fmt.Sprintf("uid-%d", i)), fmt.Sprintf("r%d", i)), "agent")
			}
			uid := types.UID(fmt.Sprintf("uid-%d", n/2))
			for b.Loop() {
				if len(d.PodTasks(uid)) != 1 {
					b.Fatal("pod's task not found")
				}
			}
		})
	}
}
