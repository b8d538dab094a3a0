package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// PKI is the local cluster's certificate authority and the credentials made
// from it. Files are kept across `up`s: a kubeconfig handed out once stays
// valid until `down`.
type PKI struct {
	Dir string
}

// Paths inside the PKI directory.
func (p PKI) CACert() string            { return filepath.Join(p.Dir, "ca.crt") }
func (p PKI) CAKey() string             { return filepath.Join(p.Dir, "ca.key") }
func (p PKI) ServiceAccountKey() string { return filepath.Join(p.Dir, "sa.key") }
func (p PKI) ServiceAccountPub() string { return filepath.Join(p.Dir, "sa.pub") }
func (p PKI) Cert(name string) string   { return filepath.Join(p.Dir, name+".crt") }
func (p PKI) Key(name string) string    { return filepath.Join(p.Dir, name+".key") }

// clientIdentity is a client certificate that becomes a kubeconfig.
type clientIdentity struct {
	file string // base name of the .crt/.key/.kubeconfig
	cn   string
	orgs []string
}

// The identities of the local cluster: the admin, the stock controllers,
// and k8sm's own components, each with the user name its RBAC rules bind.
var clientIdentities = []clientIdentity{
	{file: "admin", cn: "kubernetes-admin", orgs: []string{"system:masters"}},
	{file: "controller-manager", cn: "system:kube-controller-manager"},
	{file: "scheduler", cn: "system:kube-scheduler"},
	{file: "k8sm-broker", cn: "system:k8sm-broker"},
	{file: "apiserver-kubelet-client", cn: "kube-apiserver-kubelet-client", orgs: []string{"system:masters"}},
}

// ensure creates whatever is missing and leaves the rest untouched.
// apiserverIPs are the API server's addresses besides loopback (the
// kubernetes Service's, the one agents reach it at), which its serving
// certificate names.
func (p PKI) ensure(apiserverURL string, apiserverIPs ...string) error {
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		return fmt.Errorf("creating PKI dir: %w", err)
	}
	caCert, caKey, err := p.ensureCA()
	if err != nil {
		return err
	}
	if err := p.ensureSigned(caCert, caKey, "apiserver", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: parseIPs(append([]string{"127.0.0.1"}, apiserverIPs...)),
	}); err != nil {
		return err
	}
	for _, id := range clientIdentities {
		if err := p.ensureSigned(caCert, caKey, id.file, &x509.Certificate{
			Subject:     pkix.Name{CommonName: id.cn, Organization: id.orgs},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}); err != nil {
			return err
		}
		if err := p.writeKubeconfig(id.file, id.cn, apiserverURL); err != nil {
			return err
		}
	}
	if err := p.ensureBrokerGRPC(caCert, caKey); err != nil {
		return err
	}
	return p.ensureServiceAccountKey()
}

// Kubeconfig is the path of the kubeconfig for one identity ("admin",
// "controller-manager", "scheduler", "k8sm-broker").
func (p PKI) Kubeconfig(name string) string { return filepath.Join(p.Dir, name+".kubeconfig") }

func (p PKI) writeKubeconfig(name, user, server string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["k8sm-local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: p.CACert()}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: p.Cert(name), ClientKey: p.Key(name)}
	cfg.Contexts["k8sm-local"] = &clientcmdapi.Context{Cluster: "k8sm-local", AuthInfo: user}
	cfg.CurrentContext = "k8sm-local"
	if err := clientcmd.WriteToFile(*cfg, p.Kubeconfig(name)); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", p.Kubeconfig(name), err)
	}
	return nil
}

func (p PKI) ensureCA() (*x509.Certificate, crypto.Signer, error) {
	if cert, key, err := loadPair(p.CACert(), p.CAKey()); err == nil {
		return cert, key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("reading the local CA (remove %s to start afresh): %w", p.Dir, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "k8sm-local-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("self-signing CA: %w", err)
	}
	if err := writePair(p.CACert(), p.CAKey(), der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func (p PKI) ensureSigned(ca *x509.Certificate, caKey crypto.Signer, name string, tmpl *x509.Certificate) error {
	if _, _, err := loadPair(p.Cert(name), p.Key(name)); err == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generating key for %s: %w", name, err)
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().AddDate(1, 0, 0)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return fmt.Errorf("signing certificate for %s: %w", name, err)
	}
	return writePair(p.Cert(name), p.Key(name), der, key)
}

// ensureServiceAccountKey makes the RSA key pair that signs service account
// tokens (kube-apiserver) and that kube-controller-manager signs with.
func (p PKI) ensureServiceAccountKey() error {
	if _, err := os.Stat(p.ServiceAccountKey()); err == nil {
		return nil
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("generating service account key: %w", err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return fmt.Errorf("encoding service account public key: %w", err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	if err := os.WriteFile(p.ServiceAccountPub(), pub, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", p.ServiceAccountPub(), err)
	}
	return os.WriteFile(p.ServiceAccountKey(), priv, 0o600)
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding key %s: %w", keyPath, err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", keyPath, err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", certPath, err)
	}
	return nil
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	cb, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	kb, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cblock, _ := pem.Decode(cb)
	kblock, _ := pem.Decode(kb)
	if cblock == nil || kblock == nil {
		return nil, nil, fmt.Errorf("%s or %s is not PEM", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", certPath, err)
	}
	key, err := x509.ParseECPrivateKey(kblock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing %s: %w", keyPath, err)
	}
	return cert, key, nil
}

// NodeCredentials makes (once) what the kubelet of node needs: a client
// certificate in group system:nodes, so that the Node authorizer lets it
// write exactly its own Node, Lease and pods' status, a kubeconfig using
// it, and a serving certificate for the kubelet's own HTTPS server (logs,
// exec, port-forward), signed by the cluster CA that kube-apiserver trusts
// via --kubelet-certificate-authority. It returns the kubeconfig path.
//
// nodeIP is the kubelet's address; empty means the host's own.
func (p PKI) NodeCredentials(node, apiserverURL, nodeIP string) (kubeconfig string, err error) {
	caCert, caKey, err := loadPair(p.CACert(), p.CAKey())
	if err != nil {
		return "", fmt.Errorf("reading the local CA (is the cluster up?): %w", err)
	}
	client := "node-" + node
	if err := p.ensureSigned(caCert, caKey, client, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return "", err
	}
	// The API server dials the Node's InternalIP (or its hostname): name
	// both, the loopback address and the host's own address, which the
	// kubelet takes as its node IP (it refuses a loopback one).
	ips := []net.IP{net.ParseIP("127.0.0.1")}
	if nodeIP != "" {
		ips = append(ips, net.ParseIP(nodeIP))
	} else if ip, err := utilnet.ChooseHostInterface(); err == nil {
		ips = append(ips, ip)
	}
	if err := p.ensureSigned(caCert, caKey, client+"-serving", &x509.Certificate{
		Subject:     pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{node, "localhost"},
		IPAddresses: ips,
	}); err != nil {
		return "", err
	}
	if err := p.writeKubeconfig(client, "system:node:"+node, apiserverURL); err != nil {
		return "", err
	}
	return p.Kubeconfig(client), nil
}

// NodeServingCert returns the kubelet serving certificate and key paths
// made by NodeCredentials.
func (p PKI) NodeServingCert(node string) (cert, key string) {
	return p.Cert("node-" + node + "-serving"), p.Key("node-" + node + "-serving")
}

func parseIPs(ss []string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		if ip := net.ParseIP(s); ip != nil {
			out = append(out, ip)
		}
	}
	return out
}
