package runner

import (
	"encoding/pem"
	"os"
	"path/filepath"

	"github.com/heraldws/herald/internal/testpki"
)

// TLSFiles is the certificate of a run's TLS scenarios: a CA and a server
// certificate for localhost and 127.0.0.1 signed by it, made at run time
// (never kept: a key in the repository would be a key anybody has).
type TLSFiles struct {
	Cert, Key string // PEM, given to every server as -tls-cert and -tls-key
	CA        string // PEM, the load generators trust it (-tls-ca)
}

// MakeTLSFiles writes a fresh loopback CA, certificate and key into dir.
func MakeTLSFiles(dir string) (*TLSFiles, error) {
	lb, err := testpki.NewLoopback()
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := testpki.PEM(lb.Server)
	if err != nil {
		return nil, err
	}
	f := &TLSFiles{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), CA: filepath.Join(dir, "ca.pem")}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: lb.CA.Cert.Raw})
	for name, b := range map[string][]byte{f.Cert: certPEM, f.Key: keyPEM, f.CA: caPEM} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			return nil, err
		}
	}
	return f, nil
}
