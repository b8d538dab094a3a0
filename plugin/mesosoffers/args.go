package mesosoffers

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	frameworkruntime "k8s.io/kubernetes/pkg/scheduler/framework/runtime"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/k8sm/k8sm/pkg/rolepolicy"
)

// Defaults of Args. They are exported so that manifests and docs can point at
// one place.
const (
	DefaultBrokerAddress     = "dns:///k8sm-broker.kube-system.svc:10350"
	DefaultDialTimeout       = 5 * time.Second
	DefaultRPCTimeout        = 5 * time.Second
	DefaultLaunchTimeout     = 30 * time.Second
	DefaultReservationTTL    = 30 * time.Second
	DefaultReconnectMaxDelay = 5 * time.Second
	DefaultPreemptionDelay   = 10 * time.Second
)

// Args configure the MesosOffers plugin; they appear under pluginConfig in a
// KubeSchedulerConfiguration:
//
//	pluginConfig:
//	- name: MesosOffers
//	  args:
//	    brokerAddresses: ["k8sm-broker-0:10350", "k8sm-broker-1:10350"]
//	    reservationTTL: 30s
type Args struct {
	metav1.TypeMeta `json:",inline"`

	// BrokerAddresses are gRPC targets of the broker replicas. Only the
	// elected leader reports SERVING on the health service, and the client
	// sends requests to serving replicas only, so every replica may be
	// listed. A single "dns:///name:port" target that resolves to all
	// replicas works as well.
	BrokerAddresses []string `json:"brokerAddresses,omitempty"`
	// TLS configures transport security to the broker; without it the
	// connection is plaintext, which is only acceptable on loopback or in a
	// network the cluster trusts.
	TLS *TLSArgs `json:"tls,omitempty"`
	// DialTimeout bounds how long the first connection attempt may take
	// before the plugin reports the broker unreachable.
	DialTimeout *metav1.Duration `json:"dialTimeout,omitempty"`
	// RPCTimeout bounds Reserve, Unreserve and Kill. Reserve runs inside the
	// scheduling cycle, so this is also how long one slow broker can stall
	// the whole scheduler.
	RPCTimeout *metav1.Duration `json:"rpcTimeout,omitempty"`
	// LaunchTimeout bounds Launch, which waits for the broker's ACCEPT
	// batching window and for Mesos.
	LaunchTimeout *metav1.Duration `json:"launchTimeout,omitempty"`
	// ReservationTTL is how long reserved resources stay claimed without a
	// Launch; it must outlast the binding cycle (PreBind plugins such as
	// volume binding run before Bind).
	ReservationTTL *metav1.Duration `json:"reservationTTL,omitempty"`
	// ReconnectMaxDelay caps the back-off between attempts to re-open the
	// offer watch after the broker went away.
	ReconnectMaxDelay *metav1.Duration `json:"reconnectMaxDelay,omitempty"`
	// TolerateAgentTaint makes pods of this profile tolerate the agent taint
	// (taskinfo.AgentTaintKey) without listing it, so users need not add a
	// toleration. The stock
	// TaintToleration plugin has no arguments, so the profile disables its
	// filter and MesosOffers applies every other NoSchedule/NoExecute taint
	// exactly as TaintToleration would (default true).
	TolerateAgentTaint *bool `json:"tolerateAgentTaint,omitempty"`
	// PreemptionDelay is how long a pod waits for Mesos offers before it
	// may preempt pods of lower priority (MesosOffers' PostFilter must run
	// before DefaultPreemption). The broker declines offers no pod needs and
	// suppresses offers while none is pending, so free resources show up only
	// after it revived offers for the new pod; preempting before that would
	// kill pods for nothing. It should exceed the time Mesos takes to answer a
	// REVIVE (its allocation interval, 1s by default).
	PreemptionDelay *metav1.Duration `json:"preemptionDelay,omitempty"`
	// RolePolicyFile is the role policy (pkg/rolepolicy): which namespaces
	// may use which Mesos roles, read again when it changes. Give the
	// broker's --role-policy-file the same file (one ConfigMap). Empty: the
	// built-in policy, role "*" for every namespace and no other role.
	RolePolicyFile string `json:"rolePolicyFile,omitempty"`
	// OpportunisticBatching lets the scheduler reuse one pod's filtered and
	// scored nodes for the next pod with the same Mesos demand, roles,
	// namespace, k8sm.io/ annotations and tolerations (SignPod says why that
	// is safe with offers). It needs the scheduler's OpportunisticBatching
	// feature gate (on by default) and PodTopologySpread without default
	// constraints in the profile (SignPod). Default false:
	// docs/benchmarks.md measures what it changes.
	OpportunisticBatching *bool `json:"opportunisticBatching,omitempty"`
}

// TLSArgs name PEM files.
type TLSArgs struct {
	// CAFile verifies the broker's certificate; empty means the system pool.
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile are the scheduler's client certificate, for
	// brokers that require mutual TLS. Give both or neither.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ServerName overrides the name checked in the broker's certificate.
	ServerName string `json:"serverName,omitempty"`
}

// DeepCopyObject lets Args travel as a runtime.Object in the scheduler's
// configuration.
func (a *Args) DeepCopyObject() runtime.Object {
	if a == nil {
		return nil
	}
	out := *a
	out.BrokerAddresses = append([]string(nil), a.BrokerAddresses...)
	if a.TLS != nil {
		t := *a.TLS
		out.TLS = &t
	}
	cp := func(d *metav1.Duration) *metav1.Duration {
		if d == nil {
			return nil
		}
		c := *d
		return &c
	}
	out.DialTimeout, out.RPCTimeout, out.LaunchTimeout = cp(a.DialTimeout), cp(a.RPCTimeout), cp(a.LaunchTimeout)
	out.ReservationTTL, out.ReconnectMaxDelay = cp(a.ReservationTTL), cp(a.ReconnectMaxDelay)
	out.PreemptionDelay = cp(a.PreemptionDelay)
	if a.TolerateAgentTaint != nil {
		b := *a.TolerateAgentTaint
		out.TolerateAgentTaint = &b
	}
	if a.OpportunisticBatching != nil {
		b := *a.OpportunisticBatching
		out.OpportunisticBatching = &b
	}
	return &out
}

// SetDefaults fills every unset field.
func (a *Args) SetDefaults() {
	if len(a.BrokerAddresses) == 0 {
		a.BrokerAddresses = []string{DefaultBrokerAddress}
	}
	def := func(d **metav1.Duration, v time.Duration) {
		if *d == nil {
			*d = &metav1.Duration{Duration: v}
		}
	}
	def(&a.DialTimeout, DefaultDialTimeout)
	def(&a.RPCTimeout, DefaultRPCTimeout)
	def(&a.LaunchTimeout, DefaultLaunchTimeout)
	def(&a.ReservationTTL, DefaultReservationTTL)
	def(&a.ReconnectMaxDelay, DefaultReconnectMaxDelay)
	def(&a.PreemptionDelay, DefaultPreemptionDelay)
	if a.TolerateAgentTaint == nil {
		t := true
		a.TolerateAgentTaint = &t
	}
	if a.OpportunisticBatching == nil {
		f := false
		a.OpportunisticBatching = &f
	}
}

// Validate reports every bad field by its path in the scheduler
// configuration, so that a broken config fails start-up naming the field.
func (a *Args) Validate(path *field.Path) error {
	var errs field.ErrorList
	addrs := path.Child("brokerAddresses")
	if len(a.BrokerAddresses) == 0 {
		errs = append(errs, field.Required(addrs, "at least one broker address"))
	}
	for i, addr := range a.BrokerAddresses {
		if strings.TrimSpace(addr) == "" {
			errs = append(errs, field.Invalid(addrs.Index(i), addr, "must not be empty"))
		} else if strings.Contains(addr, "://") && len(a.BrokerAddresses) > 1 {
			errs = append(errs, field.Invalid(addrs.Index(i), addr, "a target with a resolver scheme must be the only address; list host:port pairs instead"))
		}
	}
	for _, d := range []struct {
		name string
		v    *metav1.Duration
	}{
		{"dialTimeout", a.DialTimeout}, {"rpcTimeout", a.RPCTimeout}, {"launchTimeout", a.LaunchTimeout},
		{"reservationTTL", a.ReservationTTL}, {"reconnectMaxDelay", a.ReconnectMaxDelay},
	} {
		if d.v == nil || d.v.Duration <= 0 {
			var got any
			if d.v != nil {
				got = d.v.Duration.String()
			}
			errs = append(errs, field.Invalid(path.Child(d.name), got, "must be a positive duration"))
		}
	}
	if a.PreemptionDelay == nil || a.PreemptionDelay.Duration < 0 {
		var got any
		if a.PreemptionDelay != nil {
			got = a.PreemptionDelay.Duration.String()
		}
		errs = append(errs, field.Invalid(path.Child("preemptionDelay"), got, "must be 0 (preempt at once) or a positive duration"))
	}
	if a.ReservationTTL != nil && a.LaunchTimeout != nil && a.ReservationTTL.Duration > 0 && a.ReservationTTL.Duration < time.Second {
		errs = append(errs, field.Invalid(path.Child("reservationTTL"), a.ReservationTTL.Duration.String(), "must be at least 1s: the claim has to outlive the binding cycle"))
	}
	if t := a.TLS; t != nil {
		tp := path.Child("tls")
		if (t.CertFile == "") != (t.KeyFile == "") {
			errs = append(errs, field.Invalid(tp.Child("certFile"), t.CertFile, "certFile and keyFile must be given together"))
		}
		for _, f := range []struct{ name, v string }{{"caFile", t.CAFile}, {"certFile", t.CertFile}, {"keyFile", t.KeyFile}} {
			if f.v == "" {
				continue
			}
			if _, err := os.Stat(f.v); err != nil {
				errs = append(errs, field.Invalid(tp.Child(f.name), f.v, fmt.Sprintf("cannot be read: %v", err)))
			}
		}
	}
	if a.RolePolicyFile != "" {
		if _, err := rolepolicy.Load(a.RolePolicyFile); err != nil {
			errs = append(errs, field.Invalid(path.Child("rolePolicyFile"), a.RolePolicyFile, err.Error()))
		}
	}
	return errs.ToAggregate()
}

// argsFrom decodes the plugin's configuration, defaults it and validates it.
// The scheduler hands out-of-tree plugins their args undecoded.
func argsFrom(obj runtime.Object) (*Args, error) {
	args := &Args{}
	switch o := obj.(type) {
	case nil:
	case *Args:
		args = o.DeepCopyObject().(*Args)
	case *runtime.Unknown:
		if err := decodeStrict(o, args); err != nil {
			return nil, fmt.Errorf("decoding %s args: %w", Name, err)
		}
	default:
		// Whatever else the scheduler hands over, read it the way upstream
		// helpers do.
		if err := frameworkruntime.DecodeInto(obj, args); err != nil {
			return nil, fmt.Errorf("decoding %s args: %w", Name, err)
		}
	}
	args.SetDefaults()
	if err := args.Validate(field.NewPath("pluginConfig").Key(Name).Child("args")); err != nil {
		return nil, fmt.Errorf("invalid %s args: %w", Name, err)
	}
	return args, nil
}

// decodeStrict refuses unknown and duplicate fields: frameworkruntime.DecodeInto
// would silently ignore a misspelt "brokerAdresses" and start the plugin
// against the default broker.
func decodeStrict(u *runtime.Unknown, into *Args) error {
	data := u.Raw
	if len(data) == 0 {
		return nil
	}
	if u.ContentType == runtime.ContentTypeYAML {
		j, err := yaml.YAMLToJSON(data)
		if err != nil {
			return err
		}
		data = j
	}
	strict, err := sigsjson.UnmarshalStrict(data, into)
	if err != nil {
		return nameBadField(data, err)
	}
	if len(strict) > 0 {
		return utilerrors.NewAggregate(strict)
	}
	return nil
}

// nameBadField finds the field whose value failed to decode: errors of
// custom decoders (durations) do not say where they come from.
func nameBadField(data []byte, err error) error {
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) != nil {
		return err
	}
	path := field.NewPath("pluginConfig").Key(Name).Child("args")
	for k, v := range fields {
		one, _ := json.Marshal(map[string]json.RawMessage{k: v})
		if ferr := json.Unmarshal(one, &Args{}); ferr != nil {
			return fmt.Errorf("%s: %w", path.Child(k), ferr)
		}
	}
	return err
}

var errNoReservation = errors.New("no Mesos reservation in the cycle state: Reserve did not run or failed")
