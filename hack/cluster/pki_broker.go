package cluster

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// The Broker gRPC API's certificates (mutual TLS between the scheduler
// plugin and the broker). They come from the cluster CA, which the broker
// also trusts for clients: every kubelet's and controller's certificate is
// then valid there too, and only the broker's --grpc-allowed-clients keeps
// them from its methods — which the local cluster thereby exercises.
const (
	brokerGRPCServing  = "k8sm-broker-grpc"
	schedulerGRPC      = "k8sm-scheduler-grpc"
	mesosMasterServing = "mesos-master"
	// SchedulerGRPCIdentity is the CN of the scheduler's client
	// certificate, the broker's default --grpc-allowed-clients.
	SchedulerGRPCIdentity = "k8sm-scheduler"
)

// BrokerServing returns the broker's gRPC serving certificate and key.
func (p PKI) BrokerServing() (cert, key string) {
	return p.Cert(brokerGRPCServing), p.Key(brokerGRPCServing)
}

// SchedulerBrokerClient returns the scheduler plugin's client certificate
// and key for the Broker API.
func (p PKI) SchedulerBrokerClient() (cert, key string) {
	return p.Cert(schedulerGRPC), p.Key(schedulerGRPC)
}

// MesosMasterServing returns mesos-sim's master certificate and key
// (LIBPROCESS_SSL_CERT_FILE, LIBPROCESS_SSL_KEY_FILE).
func (p PKI) MesosMasterServing() (cert, key string) {
	return p.Cert(mesosMasterServing), p.Key(mesosMasterServing)
}

func (p PKI) ensureBrokerGRPC(ca *x509.Certificate, caKey crypto.Signer) error {
	if err := p.ensureSigned(ca, caKey, mesosMasterServing, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "mesos-master"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}); err != nil {
		return err
	}
	if err := p.ensureSigned(ca, caKey, brokerGRPCServing, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "k8sm-broker"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "k8sm-broker", "k8sm-broker.kube-system.svc", "k8sm-broker.kube-system.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}); err != nil {
		return err
	}
	return p.ensureSigned(ca, caKey, schedulerGRPC, &x509.Certificate{
		Subject:     pkix.Name{CommonName: SchedulerGRPCIdentity},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// BrokerZKCredentials is the broker's ZooKeeper digest identity
// (user:password, --zk-credentials-file): the znodes it creates are its
// alone. Made once per cluster.
func (p PKI) BrokerZKCredentials() (string, error) {
	path := filepath.Join(p.Dir, "k8sm-broker-zk.credentials")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte("k8sm-broker:"+hex.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing the broker's ZooKeeper credentials: %w", err)
	}
	return path, nil
}
