package mesosoffers

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
)

func TestArgsDefaults(t *testing.T) {
	a, err := argsFrom(nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.BrokerAddresses[0] != DefaultBrokerAddress || a.RPCTimeout.Duration != DefaultRPCTimeout ||
		a.ReservationTTL.Duration != DefaultReservationTTL || a.LaunchTimeout.Duration != DefaultLaunchTimeout || !*a.TolerateAgentTaint {
		t.Errorf("defaults %+v", a)
	}
	a, err = argsFrom(&runtime.Unknown{Raw: []byte("brokerAddresses: [b1:7070, b2:7070]\nreservationTTL: 1m\n"), ContentType: runtime.ContentTypeYAML})
	if err != nil {
		t.Fatal(err)
	}
	if len(a.BrokerAddresses) != 2 || a.ReservationTTL.Duration != time.Minute || a.DialTimeout.Duration != DefaultDialTimeout {
		t.Errorf("decoded %+v", a)
	}
}

func TestBrokenArgsNameTheField(t *testing.T) {
	for raw, want := range map[string]string{
		`{"rpcTimeout":"-1s"}`:                      "pluginConfig[MesosOffers].args.rpcTimeout: Invalid value: \"-1s\": must be a positive duration",
		`{"brokerAdresses":["x:1"]}`:                `unknown field "brokerAdresses"`,
		`{"brokerAddresses":[""]}`:                  "pluginConfig[MesosOffers].args.brokerAddresses[0]",
		`{"tls":{"certFile":"/nonexistent.crt"}}`:   "pluginConfig[MesosOffers].args.tls.certFile",
		`{"reservationTTL":"10ms"}`:                 "pluginConfig[MesosOffers].args.reservationTTL",
		`{"brokerAddresses":["dns:///b:1","b2:1"]}`: "pluginConfig[MesosOffers].args.brokerAddresses[0]",
		`{"launchTimeout":"soon"}`:                  "launchTimeout",
	} {
		_, err := New(context.Background(), &runtime.Unknown{Raw: []byte(raw), ContentType: runtime.ContentTypeJSON}, nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("args %s: error %v, want it to contain %q", raw, err, want)
		}
	}
}
