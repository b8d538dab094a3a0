package app

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestValidateNamesFlags: every configuration mistake is reported, naming
// the flag to fix.
func TestValidateNamesFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, []string{"--master is required"}},
		{[]string{"--master=mesos:5050"}, []string{"--master=\"mesos:5050\""}},
		{[]string{"--master=http://m:5050"}, []string{"--leader-elect needs ZooKeeper"}},
		{[]string{"--master=zk://zk:2181", "--mesos-codec=xml", "--failover-timeout=0", "--roles="}, []string{"--master: ", "--mesos-codec", "--failover-timeout", "--roles"}},
		{[]string{"--master=http://m:5050", "--leader-elect=false", "--secret-file=/s"}, []string{"--secret-file needs --principal"}},
	} {
		o := NewOptions()
		fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := o.Validate()
		if err == nil {
			t.Errorf("%v: accepted", tc.args)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", tc.args, err, w)
			}
		}
	}
	o := NewOptions()
	o.Master = "zk://zk1:2181,zk2:2181/mesos"
	if err := o.Validate(); err != nil {
		t.Errorf("defaults with a zk:// master: %v", err)
	}
}
