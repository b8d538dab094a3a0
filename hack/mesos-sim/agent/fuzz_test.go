package agent

import (
	"testing"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/executor"

	"github.com/k8sm/k8sm/hack/mesos-sim/wire"
)

// FuzzDecodeExecutorCall: executor calls in either encoding decode and
// validate without panicking, and anything accepted is well-formed enough
// for the handler to use.
func FuzzDecodeExecutorCall(f *testing.F) {
	u := make([]byte, 16)
	calls := []*executor.Call{
		{Type: executor.Call_SUBSCRIBE, FrameworkID: mesos.FrameworkID{Value: "f"}, ExecutorID: mesos.ExecutorID{Value: "e"},
			Subscribe: &executor.Call_Subscribe{UnacknowledgedUpdates: []executor.Call_Update{{Status: mesos.TaskStatus{TaskID: mesos.TaskID{Value: "t"}, State: mesos.TASK_RUNNING.Enum(), UUID: u}}}}},
		{Type: executor.Call_UPDATE, FrameworkID: mesos.FrameworkID{Value: "f"}, ExecutorID: mesos.ExecutorID{Value: "e"},
			Update: &executor.Call_Update{Status: mesos.TaskStatus{TaskID: mesos.TaskID{Value: "t"}, State: mesos.TASK_RUNNING.Enum(), Source: mesos.SOURCE_EXECUTOR.Enum(), UUID: u}}},
		{Type: executor.Call_MESSAGE, FrameworkID: mesos.FrameworkID{Value: "f"}, ExecutorID: mesos.ExecutorID{Value: "e"}, Message: &executor.Call_Message{Data: []byte("x")}},
	}
	for _, c := range calls {
		for i, ct := range []string{wire.JSON, wire.Protobuf} {
			b, err := wire.Encode(ct, c)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(byte(i), b)
		}
	}
	f.Fuzz(func(t *testing.T, enc byte, body []byte) {
		ct := wire.JSON
		if enc%2 == 1 {
			ct = wire.Protobuf
		}
		var c executor.Call
		if err := wire.Decode(ct, body, &c); err != nil {
			if err.Error() == "" {
				t.Fatal("decode error without a message")
			}
			return
		}
		if err := validateExecutorCall(&c); err != nil {
			return
		}
		switch c.Type {
		case executor.Call_SUBSCRIBE:
			if c.Subscribe == nil {
				t.Fatal("valid SUBSCRIBE without subscribe")
			}
		case executor.Call_UPDATE:
			if c.Update == nil || len(c.Update.Status.UUID) != 16 {
				t.Fatal("valid UPDATE without a uuid")
			}
		case executor.Call_MESSAGE:
			if c.Message == nil {
				t.Fatal("valid MESSAGE without message")
			}
		}
	})
}
