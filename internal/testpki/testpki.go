// Package testpki makes the certificates TLS tests need: a certificate
// authority, server certificates for loopback names, and client
// certificates, all generated in the process (ECDSA P-256, valid for a
// day). It is for tests and examples, never for a real deployment.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"time"
)

// CA is a certificate authority that signs server and client certificates.
type CA struct {
	Cert *x509.Certificate
	Pool *x509.CertPool // holds Cert only: trust it in RootCAs or ClientCAs
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

// NewCA makes a certificate authority named name.
func NewCA(name string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Pool: pool, key: key}, nil
}

// Server issues a server certificate for hosts (DNS names or IP
// addresses).
func (ca *CA) Server(hosts ...string) (tls.Certificate, error) {
	return ca.issue(hosts[0], hosts, x509.ExtKeyUsageServerAuth)
}

// Client issues a client certificate with the common name cn.
func (ca *CA) Client(cn string) (tls.Certificate, error) {
	return ca.issue(cn, nil, x509.ExtKeyUsageClientAuth)
}

func (ca *CA) issue(cn string, hosts []string, usage x509.ExtKeyUsage) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// PEM returns cert's chain and key PEM-encoded, as tls.LoadX509KeyPair
// reads them.
func PEM(cert tls.Certificate) (certPEM, keyPEM []byte, err error) {
	for _, der := range cert.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Loopback is a CA with a server certificate for localhost, 127.0.0.1
// and ::1, ready for a server's and a client's tls.Config.
type Loopback struct {
	CA     *CA
	Server tls.Certificate
}

// NewLoopback makes a CA and a server certificate for the loopback names.
func NewLoopback() (*Loopback, error) {
	ca, err := NewCA("herald test CA")
	if err != nil {
		return nil, err
	}
	srv, err := ca.Server("localhost", "127.0.0.1", "::1")
	if err != nil {
		return nil, err
	}
	return &Loopback{CA: ca, Server: srv}, nil
}

// ServerConfig is a server config with the loopback certificate.
func (l *Loopback) ServerConfig() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{l.Server}}
}

// ClientConfig is a client config that trusts the CA, for server name
// "localhost".
func (l *Loopback) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: l.CA.Pool, ServerName: "localhost"}
}
