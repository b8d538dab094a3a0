package mesosoffers

import (
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	fwk "k8s.io/kube-scheduler/framework"

	brokerv1 "github.com/k8sm/k8sm/proto/broker/v1"
)

// A failed bind's message is what an operator reads in the scheduler's log
// and the pod's events: it must name the part that did not answer.
func TestBrokerStatusNamesWhoDidNotAnswer(t *testing.T) {
	masterSilent, err := status.New(codes.Unavailable, "accepting offers [o1] of agent a1 (S1): Mesos did not answer").
		WithDetails(&errdetails.ErrorInfo{Domain: brokerv1.ErrorDomain, Reason: brokerv1.ReasonMesosUnavailable})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		err       error
		want, not string
	}{
		{"master", masterSilent.Err(), "the Mesos master did not answer the k8sm broker", "broker is unreachable"},
		{"broker", status.Error(codes.Unavailable, "connection error: dial tcp 127.0.0.1:9443: connect: connection refused"), "the k8sm broker is unreachable", "Mesos master"},
		{"broker deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), "the k8sm broker is unreachable", "Mesos master"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := brokerStatus("launching on node n1", tc.err)
			if st.Code() != fwk.Error {
				t.Errorf("code %v, want Error (back-off)", st.Code())
			}
			if msg := st.Message(); !strings.Contains(msg, tc.want) || strings.Contains(msg, tc.not) {
				t.Errorf("message %q: want it to say %q, not %q", msg, tc.want, tc.not)
			}
		})
	}
}
