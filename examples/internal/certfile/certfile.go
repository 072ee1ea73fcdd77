// Package certfile serves a TLS certificate from a PEM certificate file and
// key file, for the examples' -tls-cert and -tls-key flags, and reads them
// again when the certificate file changes: a renewed certificate (certbot,
// cert-manager) is served from the next handshake on, without a restart.
package certfile

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// Pair is a certificate file and its key file. A renewal that cannot be
// loaded yet (the key not written yet) keeps the previous certificate until
// it can.
type Pair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	modTime time.Time
	size    int64
}

// Load loads the pair once, so that a bad pair fails at start.
func Load(certFile, keyFile string) (*Pair, error) {
	p := &Pair{certFile: certFile, keyFile: keyFile}
	if _, err := p.get(); err != nil {
		return nil, err
	}
	return p, nil
}

// Config is a tls.Config serving the pair (TLS 1.2 and 1.3; ALPN is the
// server's business).
func (p *Pair) Config() *tls.Config {
	return &tls.Config{GetCertificate: p.GetCertificate}
}

// GetCertificate is tls.Config.GetCertificate: crypto/tls calls it at every
// handshake, and it costs a stat of the certificate file.
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.get()
}

func (p *Pair) get() (*tls.Certificate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := os.Stat(p.certFile)
	if err != nil {
		if p.cert != nil {
			return p.cert, nil
		}
		return nil, err
	}
	if p.cert != nil && st.ModTime().Equal(p.modTime) && st.Size() == p.size {
		return p.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		if p.cert != nil {
			return p.cert, nil
		}
		return nil, fmt.Errorf("loading -tls-cert %s and -tls-key %s: %w", p.certFile, p.keyFile, err)
	}
	p.cert, p.modTime, p.size = &cert, st.ModTime(), st.Size()
	return p.cert, nil
}
