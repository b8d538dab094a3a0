package brokerv1

// ErrorDomain is the domain of the google.rpc.ErrorInfo details the broker
// attaches to its errors.
const ErrorDomain = "k8sm.io"

// ReasonMesosUnavailable is the ErrorInfo reason of an Unavailable error the
// broker returns because the Mesos master did not answer it (or could not be
// reached by it). The plugin tells it apart from a broker it cannot reach:
// both are codes.Unavailable, but an operator looks at different machines.
const ReasonMesosUnavailable = "MESOS_MASTER_UNAVAILABLE"
