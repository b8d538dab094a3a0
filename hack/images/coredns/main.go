// Command coredns is the local cluster's DNS server: CoreDNS of the pinned
// release (github.com/coredns/coredns), built with only the plugins a
// cluster's DNS needs, as CoreDNS supports for custom builds (its
// plugin.cfg, here the directive list below). The full build links every
// cloud provider's SDK; this one answers for the cluster's Services and
// pods and nothing else: there is no upstream resolver, so no query leaves
// the machine.
//
// It is a module of its own so that CoreDNS's dependency versions never
// move those of k8sm's main module.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// directives are the plugins a Corefile may use, in CoreDNS's order
// (core/dnsserver/zdirectives.go): each sees a request after those before
// it.
var directives = []string{
	"reload",
	"ready",
	"health",
	"errors",
	"log",
	"loadbalance",
	"cache",
	"kubernetes",
}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
