package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"

	"github.com/k8sm/k8sm/manifests"
)

// CoreDNSImage is the cluster DNS server's image (hack/images/coredns).
const CoreDNSImage = "k8sm.local/coredns:latest"

// DNSManifest is the cluster DNS: CoreDNS behind the kube-dns Service.
const DNSManifest = "coredns.yaml"

// DNSDomain is the cluster's DNS domain.
const DNSDomain = "cluster.local"

// dnsManifestIP is the kube-dns Service's clusterIP as the manifest spells
// it; the cluster's own replaces it.
const dnsManifestIP = "clusterIP: 10.96.0.10"

// DNSServiceIP is the kube-dns Service's address, which every kubelet
// gives its pods: the tenth of the Service range, as kubeadm chooses.
func (c Config) DNSServiceIP() string {
	p, err := netip.ParsePrefix(c.ServiceSubnet)
	if err != nil {
		return ""
	}
	a := p.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	return a.String()
}

// dnsManifest is manifests/coredns.yaml for this cluster's Service range.
func (c Config) dnsManifest() ([]byte, error) {
	b, err := manifests.FS.ReadFile(DNSManifest)
	if err != nil {
		return nil, fmt.Errorf("reading manifests/%s: %w", DNSManifest, err)
	}
	if bytes.Count(b, []byte(dnsManifestIP)) != 1 {
		return nil, fmt.Errorf("manifests/%s: want exactly one %q to set the cluster's own", DNSManifest, dnsManifestIP)
	}
	return bytes.Replace(b, []byte(dnsManifestIP), []byte("clusterIP: "+c.DNSServiceIP()), 1), nil
}

// DeployDNS applies the cluster DNS (manifests/coredns.yaml: CoreDNS placed
// through k8sm on the agents, behind the kube-dns Service at DNSServiceIP)
// and waits until its pods run through Mesos and answer (Ready).
func (cl *Cluster) DeployDNS(ctx context.Context) error {
	doc, err := cl.Config.dnsManifest()
	if err != nil {
		return err
	}
	if err := cl.Config.applyYAML(ctx, "manifests/"+DNSManifest, doc); err != nil {
		return err
	}
	if err := cl.waitThroughMesos(ctx, "kube-system", "coredns", "k8s-app=kube-dns"); err != nil {
		return fmt.Errorf("the cluster DNS (manifests/%s) did not run through Mesos: %w", DNSManifest, err)
	}
	return nil
}
