package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// startAPIServer runs kube-apiserver against the local etcd with client
// certificate authentication, RBAC and Node authorization, and service
// account tokens signed by the cluster's key.
func startAPIServer(ctx context.Context, c Config) (*Process, error) {
	bin, err := c.bin("kube-apiserver")
	if err != nil {
		return nil, err
	}
	if err := checkPortFree("kube-apiserver", c.APIServerPort, "K8SM_APISERVER_PORT"); err != nil {
		return nil, err
	}
	pki := c.PKI()
	// Alone it serves the host only. With agents it serves them too, at
	// the host's address on their link, which it advertises as the
	// kubernetes Service's endpoint (the reconciler refuses loopback).
	addr := []string{"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none"}
	if c.Agents > 0 {
		addr = []string{"--bind-address=0.0.0.0", "--advertise-address=" + c.HostIP(), "--endpoint-reconciler-type=lease"}
	}
	p, err := startProcess("kube-apiserver", c.StateDir, nil, append(append([]string{bin}, addr...),
		"--etcd-servers="+fmt.Sprintf("http://127.0.0.1:%d", c.EtcdPort),
		"--secure-port="+strconv.Itoa(c.APIServerPort),
		"--cert-dir="+filepath.Join(c.StateDir, "kube-apiserver"),
		"--tls-cert-file="+pki.Cert("apiserver"),
		"--tls-private-key-file="+pki.Key("apiserver"),
		"--client-ca-file="+pki.CACert(),
		"--kubelet-client-certificate="+pki.Cert("apiserver-kubelet-client"),
		"--kubelet-client-key="+pki.Key("apiserver-kubelet-client"),
		"--kubelet-certificate-authority="+pki.CACert(),
		// Agents' Nodes are named after Mesos agents (k8sm-agent-1), names
		// no resolver knows: reach kubelets at their address first.
		"--kubelet-preferred-address-types=InternalIP,Hostname",
		"--service-account-key-file="+pki.ServiceAccountPub(),
		"--service-account-signing-key-file="+pki.ServiceAccountKey(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range="+c.ServiceSubnet,
		fmt.Sprintf("--service-node-port-range=%d-%d", c.NodePortsBegin, c.NodePortsEnd),
		"--authorization-mode=Node,RBAC",
		// As kubeadm: a kubelet writes only its own Node and pods, and
		// cannot set node-restriction.kubernetes.io labels — so it cannot
		// forge the broker's mark on a Node (docs/security.md).
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=1",
	)...)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, p, 3*time.Minute, getOKProbe(adminHTTPClient(pki), c.APIServerURL()+"/readyz")); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// startControllerManager runs kube-controller-manager so that Deployments,
// ReplicaSets, service accounts, garbage collection and node lifecycle
// behave as on any cluster.
func startControllerManager(ctx context.Context, c Config) (*Process, error) {
	bin, err := c.bin("kube-controller-manager")
	if err != nil {
		return nil, err
	}
	if err := checkPortFree("kube-controller-manager", c.ControllerManagerPort, "K8SM_CONTROLLER_MANAGER_PORT"); err != nil {
		return nil, err
	}
	pki := c.PKI()
	kc := pki.Kubeconfig("controller-manager")
	var podCIDRs []string
	if c.Agents > 0 {
		// A pod CIDR per Node, from which its containerd hands out pod
		// addresses and to which the other nodes route (executor/podnet).
		// Not without agents: the benchmark's thousands of hollow Nodes
		// would exhaust the range, one event each.
		podCIDRs = []string{"--allocate-node-cidrs=true", "--cluster-cidr=" + c.PodSubnet, "--node-cidr-mask-size=24"}
	}
	p, err := startProcess("kube-controller-manager", c.StateDir, nil, append(append([]string{bin}, podCIDRs...),
		"--kubeconfig="+kc,
		"--authentication-kubeconfig="+kc,
		"--authorization-kubeconfig="+kc,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(c.ControllerManagerPort),
		"--cert-dir="+filepath.Join(c.StateDir, "kube-controller-manager"),
		"--service-account-private-key-file="+pki.ServiceAccountKey(),
		"--root-ca-file="+pki.CACert(),
		"--cluster-signing-cert-file="+pki.CACert(),
		"--cluster-signing-key-file="+pki.CAKey(),
		"--use-service-account-credentials=true",
		"--service-cluster-ip-range="+c.ServiceSubnet,
		"--leader-elect=false",
		"--controllers=*",
		// The default 20 requests/s per controller take the node lifecycle
		// controller over a minute to lift the not-ready taint of 1,000
		// new Nodes (the benchmark's agents); large clusters raise it too.
		"--kube-api-qps=100", "--kube-api-burst=200",
		"--profiling=false",
		"--v=1",
	)...)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, p, 2*time.Minute, selfSignedHealthz(c.ControllerManagerPort)); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// adminHTTPClient authenticates as the cluster admin and trusts only the
// local CA.
func adminHTTPClient(pki PKI) *http.Client {
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(pki.CACert()); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert, err := tls.LoadX509KeyPair(pki.Cert("admin"), pki.Key("admin")); err == nil {
		cfg.Certificates = []tls.Certificate{cert}
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
}

// getOKProbe is a waitHealthy probe: GET url answers 200 OK.
func getOKProbe(client *http.Client, url string) func(context.Context) error {
	return func(ctx context.Context) error { return getOK(ctx, client, url) }
}

// selfSignedHealthz is the waitHealthy probe of kube-controller-manager
// and kube-scheduler on 127.0.0.1:port: they make their serving
// certificate themselves at start, so there is no CA to verify it with, and
// /healthz needs no credentials.
func selfSignedHealthz(port int) func(context.Context) error {
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return getOKProbe(insecure, fmt.Sprintf("https://127.0.0.1:%d/healthz", port))
}

func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return fmt.Errorf("%w: GET %s: %s: %s", errNotReady, url, resp.Status, b)
	}
	return nil
}
