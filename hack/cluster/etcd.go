package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"time"
)

// startEtcd runs the etcd built from go.etcd.io/etcd/server/v3 at the
// version k8s.io/kubernetes pins (hack/cmd/etcd): the one this
// kube-apiserver is tested with, rather than Debian's three minors older.
func startEtcd(ctx context.Context, c Config) (*Process, error) {
	bin, err := c.bin("etcd")
	if err != nil {
		return nil, err
	}
	if err := checkPortFree("etcd", c.EtcdPort, "K8SM_ETCD_PORT"); err != nil {
		return nil, err
	}
	if err := checkPortFree("etcd peer", c.EtcdPeerPort, "K8SM_ETCD_PEER_PORT"); err != nil {
		return nil, err
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", c.EtcdPort)
	peer := fmt.Sprintf("http://127.0.0.1:%d", c.EtcdPeerPort)
	p, err := startProcess("etcd", c.StateDir, nil, bin,
		"--name=k8sm",
		"--data-dir="+filepath.Join(c.StateDir, "etcd"),
		"--listen-client-urls="+client,
		"--advertise-client-urls="+client,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster=k8sm="+peer,
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	if err := waitHealthy(ctx, p, 60*time.Second, func(ctx context.Context) error { return etcdHealthy(ctx, client) }); err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

func etcdHealthy(ctx context.Context, url string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return fmt.Errorf("decoding etcd /health: %w", err)
	}
	if h.Health != "true" {
		return fmt.Errorf("%w: etcd health %q %s", errNotReady, h.Health, h.Reason)
	}
	return nil
}
