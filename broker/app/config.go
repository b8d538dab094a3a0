package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	mesos "github.com/mesos/mesos-go/api/v1/lib"
	"github.com/mesos/mesos-go/api/v1/lib/encoding/codecs"
	"google.golang.org/grpc"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k8sm/k8sm/broker/executorserve"
	"github.com/k8sm/k8sm/broker/framework"
	"github.com/k8sm/k8sm/broker/leadergate"
	brokermesos "github.com/k8sm/k8sm/broker/mesos"
	brokerzk "github.com/k8sm/k8sm/broker/zk"
	"github.com/k8sm/k8sm/pkg/podresources"
	"github.com/k8sm/k8sm/pkg/rolepolicy"
	"github.com/k8sm/k8sm/pkg/taskinfo"
)

// Config is everything Run needs, resolved from Options: clients built,
// listeners bound, files read.
type Config struct {
	Options *Options

	Kube kubernetes.Interface
	// Heartbeats is the node mirror's client (nodes.Config.Client): it
	// stands in for the kubelets of agents without one, so its requests
	// grow with the agents. No client-side rate limit; the mirror's
	// workers (--node-sync-workers) bound it.
	Heartbeats kubernetes.Interface
	// Gate fences Kube's and Heartbeats' writes: they pass only while this
	// broker leads (Run opens a term once elected).
	Gate      *leadergate.Gate
	Framework mesos.FrameworkInfo
	Secret    string
	// MasterTLS verifies the masters' certificates (--master-ca-file).
	MasterTLS *tls.Config
	MediaType string
	Executor  podresources.Resources
	Builder   executorBuilder

	// ZKServers and ZKPath hold the broker's state (empty: none).
	ZKServers []string
	ZKPath    string
	// MasterZK is the masters' znode when --master is zk://.
	MasterZKServers []string
	MasterZKPath    string
	// ZKAuth and MasterZKAuth are the digest credentials of the two
	// sessions (nil: none).
	ZKAuth, MasterZKAuth *brokerzk.Auth

	// MemoryLimit is the Go runtime's soft memory limit in bytes (0:
	// none), from MemoryLimitSource (empty: the runtime's own default).
	MemoryLimit       int64
	MemoryLimitSource string

	GRPCListener net.Listener
	// GRPCServerOptions secure the Broker API (GRPCSecurityOptions).
	GRPCServerOptions []grpc.ServerOption
	HTTPListener      net.Listener
	// ExecutorBinary, served on ExecutorListener (--executor-binary).
	ExecutorBinary   *executorserve.Binary
	ExecutorListener net.Listener
	// RolePolicy is --role-policy-file, read again when it changes.
	RolePolicy rolepolicy.Source
}

// Config validates the options and resolves them.
func (o *Options) Config(ctx context.Context) (*Config, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	c := &Config{Options: o, Builder: executorBuilder{exec: taskinfo.ExecutorConfig{
		Command: o.ExecutorCommand, Kubeconfig: o.ExecutorKubeconfig, ContainerRuntimeEndpoint: o.ExecutorCRI,
		RootDir: o.ExecutorRootDir, ExtraArgs: o.ExecutorArgs, ShutdownGracePeriod: o.ExecutorShutdownGrace,
	}}}
	var err error
	if c.MemoryLimit, c.MemoryLimitSource, err = memoryLimit(o.MemoryLimit, "/sys/fs/cgroup", "/proc/self/cgroup"); err != nil {
		return nil, err
	}
	if c.RolePolicy, err = rolepolicy.NewSource(o.RolePolicyFile); err != nil {
		return nil, fmt.Errorf("--role-policy-file: %w", err)
	}
	if err := o.checkRolePolicy(c.RolePolicy.Current()); err != nil {
		return nil, err
	}
	var rc *rest.Config
	if o.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	rc.UserAgent = "k8sm-broker"
	c.Gate = &leadergate.Gate{}
	rc.Wrap(c.Gate.Wrap)
	rc.QPS, rc.Burst = o.KubeAPIQPS, int(o.KubeAPIBurst)
	if c.Kube, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	hb := rest.CopyConfig(rc)
	hb.QPS, hb.Burst = -1, 0 // client-go: a negative QPS means no rate limiter
	if c.Heartbeats, err = kubernetes.NewForConfig(hb); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	if o.SecretFile != "" {
		b, err := os.ReadFile(o.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("--secret-file: %w", err)
		}
		c.Secret = strings.TrimSpace(string(b))
	}
	if o.MasterCAFile != "" {
		b, err := os.ReadFile(o.MasterCAFile)
		if err != nil {
			return nil, fmt.Errorf("--master-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--master-ca-file=%s holds no PEM certificate", o.MasterCAFile)
		}
		c.MasterTLS = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	c.MediaType = string(codecs.MediaTypeProtobuf)
	if o.Codec == "json" {
		c.MediaType = string(codecs.MediaTypeJSON)
	}
	ft := o.FailoverTimeout.Seconds()
	cp := o.Checkpoint
	host := o.Hostname
	c.Framework = mesos.FrameworkInfo{
		User: o.FrameworkUser, Name: o.FrameworkName, FailoverTimeout: &ft, Checkpoint: &cp, Hostname: &host,
		Roles: o.Roles, Capabilities: framework.Capabilities(o.PartitionAware),
	}
	if o.Principal != "" {
		p := o.Principal
		c.Framework.Principal = &p
	}
	c.Executor = podresources.Resources{Scalars: podresources.Scalars{
		CPUs: podresources.MilliFromFloat(o.ExecutorCPUs), MemMB: podresources.MilliFromFloat(o.ExecutorMemMB)}}
	c.Builder.resources = c.Executor
	if o.ExecutorBinary != "" {
		if c.ExecutorBinary, err = executorserve.Open(o.ExecutorBinary); err != nil {
			return nil, fmt.Errorf("--executor-binary: %w", err)
		}
		c.Builder.exec.URIs = append(c.Builder.exec.URIs, c.ExecutorBinary.URI(o.ExecutorURLBase))
		c.Builder.exec.SHA256 = c.ExecutorBinary.SHA256()
	}
	if o.ExecutorSHA256 != "" {
		c.Builder.exec.SHA256 = strings.ToLower(o.ExecutorSHA256)
	}
	for _, u := range o.ExecutorURIs {
		exec, extract := true, false
		c.Builder.exec.URIs = append(c.Builder.exec.URIs, mesos.CommandInfo_URI{Value: u, Executable: &exec, Extract: &extract})
	}

	if strings.HasPrefix(o.Master, "zk://") {
		c.MasterZKServers, c.MasterZKPath, _ = brokerzk.ParseURL(o.Master)
		c.ZKServers, c.ZKPath = c.MasterZKServers, "/k8sm"
	}
	if o.ZK != "" {
		c.ZKServers, c.ZKPath, _ = brokerzk.ParseURL(o.ZK)
	}
	if c.ZKAuth, c.MasterZKAuth, err = o.zkAuth(true); err != nil {
		return nil, err
	}
	if c.GRPCServerOptions, err = o.GRPC.serverOptions(); err != nil {
		return nil, err
	}
	if c.GRPCListener, err = net.Listen("tcp", o.GRPCAddress); err != nil {
		return nil, fmt.Errorf("--grpc-bind-address: %w", err)
	}
	if o.HTTPAddress != "" {
		if c.HTTPListener, err = net.Listen("tcp", o.HTTPAddress); err != nil {
			_ = c.GRPCListener.Close()
			return nil, fmt.Errorf("--http-bind-address: %w", err)
		}
	}
	if c.ExecutorBinary != nil {
		if c.ExecutorListener, err = net.Listen("tcp", o.ExecutorBindAddress); err != nil {
			_ = c.GRPCListener.Close()
			if c.HTTPListener != nil {
				_ = c.HTTPListener.Close()
			}
			return nil, fmt.Errorf("--executor-bind-address: %w", err)
		}
	}
	return c, nil
}

// detector returns the master detector and, for ZooKeeper, its runner.
func (c *Config) detector(sess *brokerzk.Session) (brokermesos.Detector, func(context.Context)) {
	if c.MasterZKPath == "" {
		return brokermesos.StaticMaster(c.Options.Master), func(context.Context) {}
	}
	d := brokerzk.NewMasterDetector(sess, c.MasterZKPath)
	if c.MasterTLS != nil {
		return brokermesos.HTTPS{Detector: d}, d.Run
	}
	return d, d.Run
}

var errLeadershipLost = errors.New("leadership lost")
