package proxy

import (
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	proxyapp "k8s.io/kubernetes/cmd/kube-proxy/app"
)

// TestConfigurationIsValidForKubeProxy: the file the executor writes is
// one the stock kube-proxy loads and validates, in both modes.
func TestConfigurationIsValidForKubeProxy(t *testing.T) {
	for _, mode := range []string{"iptables", "nftables"} {
		c := Config{Mode: mode, Kubeconfig: "/etc/k8sm/node.kubeconfig", NodeName: "agent-1", NodeIP: "10.87.0.11",
			ClusterCIDR: "10.88.0.0/16", Dir: t.TempDir()}
		if err := c.write(); err != nil {
			t.Fatal(err)
		}
		o := proxyapp.NewOptions()
		fs := pflag.NewFlagSet("kube-proxy", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse([]string{"--config=" + c.File()}); err != nil {
			t.Fatal(err)
		}
		if err := o.Complete(fs); err != nil {
			t.Fatalf("%s: kube-proxy does not load the configuration: %v", mode, err)
		}
		if err := o.Validate(); err != nil {
			t.Errorf("%s: kube-proxy refuses the configuration: %v", mode, err)
		}
	}
}

// TestValidateSaysWhatIsWrong: an unknown mode, or a mode whose tool the
// host lacks, is refused naming what to do.
func TestValidateSaysWhatIsWrong(t *testing.T) {
	missing := func(string) (string, error) { return "", errors.New("not found") }
	found := func(p string) (string, error) { return "/usr/sbin/" + p, nil }
	for _, tc := range []struct {
		mode string
		look func(string) (string, error)
		want string
	}{
		{"ipvs", found, "want iptables or nftables"},
		{"nftables", missing, "needs nft on the host (Debian: apt-get install nftables)"},
		{"iptables", missing, "needs iptables-restore on the host (Debian: apt-get install iptables)"},
		{"iptables", found, ""},
	} {
		err := Config{Mode: tc.mode}.Validate(tc.look)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.mode, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error saying %q", tc.mode, err, tc.want)
		}
	}
}
