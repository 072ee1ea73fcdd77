package interop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"
)

// selfSigned writes a self-signed certificate for localhost and 127.0.0.1
// and its key into dir, as the echo's -tls-cert and -tls-key read them, and
// returns the files and a pool that trusts the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	roots = x509.NewCertPool()
	roots.AddCert(cert)
	return certFile, keyFile, roots
}

// startWSS starts the echo serving wss:// and returns it with its URL
// switched to wss://localhost and a client config that trusts it.
func startWSS(t *testing.T, args ...string) (*echoServer, *tls.Config) {
	t.Helper()
	certFile, keyFile, roots := selfSigned(t, t.TempDir())
	s := startEcho(t, append([]string{"-tls-cert", certFile, "-tls-key", keyFile}, args...)...)
	_, port, _ := net.SplitHostPort(s.Addr)
	s.URL = "wss://localhost:" + port + "/"
	return s, &tls.Config{RootCAs: roots}
}

// gorilla/websocket over wss://: echo of every size, fragmented and with
// permessage-deflate, TLS 1.3 with ALPN http/1.1 as the client offers it.
func TestGorillaWSS(t *testing.T) {
	s, cfg := startWSS(t, "-v")
	cfg.NextProtos = []string{"http/1.1"}
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("deflate=%v", deflate), func(t *testing.T) {
			d := &websocket.Dialer{HandshakeTimeout: hangGuard, TLSClientConfig: cfg, EnableCompression: deflate}
			c, resp, err := d.Dial(s.URL, nil)
			if err != nil {
				t.Fatalf("dial %s: %v", s.URL, err)
			}
			defer c.Close()
			c.SetReadLimit(64 << 20)
			st := c.UnderlyingConn().(*tls.Conn).ConnectionState()
			if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "http/1.1" {
				t.Fatalf("TLS version %#x, ALPN %q", st.Version, st.NegotiatedProtocol)
			}
			if deflate {
				s.checkDeflate(t, resp.Header.Get("Sec-WebSocket-Extensions"))
				c.EnableWriteCompression(true)
			}
			for _, text := range []bool{true, false} {
				for _, n := range echoSizes {
					if deflate && n > 1<<20 {
						continue
					}
					gorillaEcho(t, c, text, n, 31)
				}
			}
		})
	}
}

// coder/websocket over wss:// through net/http's client: echo of every
// size, one frame each.
func TestCoderWSS(t *testing.T) {
	s, cfg := startWSS(t)
	opts := &coder.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
	c, _ := coderDial(t, s, opts)
	for _, text := range []bool{true, false} {
		for _, n := range echoSizes {
			coderEcho(t, c, text, n, 37)
		}
	}
	if err := c.Close(coder.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// A plain ws:// client on the wss:// port gets net/http's 400.
func TestPlainOnWSSPort(t *testing.T) {
	s, _ := startWSS(t)
	_, resp, err := websocket.DefaultDialer.Dial("ws://"+s.Addr+"/", nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain dial on the TLS port: %v, %+v", err, resp)
	}
	if !strings.Contains(resp.Status, "400") {
		t.Fatalf("status %q", resp.Status)
	}
}
