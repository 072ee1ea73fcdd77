package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// certFiles serves the certificate in a PEM certificate file and key file,
// and reads them again when the certificate file changes: a renewed
// certificate (certbot, cert-manager) is served from the next handshake on,
// without a restart. A renewal that cannot be loaded (the key not written
// yet) keeps the previous certificate until it can.
type certFiles struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	size    int64
}

// loadCertFiles loads the pair once, so that a bad pair fails at start.
func loadCertFiles(certFile, keyFile string) (*certFiles, error) {
	f := &certFiles{certFile: certFile, keyFile: keyFile}
	if _, err := f.get(); err != nil {
		return nil, err
	}
	return f, nil
}

// GetCertificate is tls.Config.GetCertificate: crypto/tls calls it at every
// handshake.
func (f *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.get()
}

func (f *certFiles) get() (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st, err := os.Stat(f.certFile)
	if err != nil {
		if f.cert != nil {
			return f.cert, nil
		}
		return nil, err
	}
	if f.cert != nil && st.ModTime().Equal(f.modTime) && st.Size() == f.size {
		return f.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		if f.cert != nil {
			return f.cert, nil
		}
		return nil, fmt.Errorf("loading -tls-cert %s and -tls-key %s: %w", f.certFile, f.keyFile, err)
	}
	f.cert, f.modTime, f.size = &cert, st.ModTime(), st.Size()
	return f.cert, nil
}
