package peers_test

import (
	"bytes"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/heraldws/herald/internal/testpki"
)

// TestTLS checks every peer over wss:// with a loopback certificate made
// for the test: -tls-cert and -tls-key serve TLS, a client that trusts the
// test CA gets echoes back whole and ticks in order, and SIGTERM still
// closes with 1001. Peers in parallel.
func TestTLS(t *testing.T) {
	lb, err := testpki.NewLoopback()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := testpki.PEM(lb.Server)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	d := websocket.Dialer{HandshakeTimeout: 60 * time.Second, TLSClientConfig: lb.ClientConfig()}
	dialTLS := func(t *testing.T, url string) *websocket.Conn {
		t.Helper()
		c, resp, err := d.Dial(url, http.Header{"Origin": {"https://elsewhere.example"}})
		if err != nil {
			status := ""
			if resp != nil {
				status = resp.Status
			}
			t.Fatalf("dial %s: %v %s", url, err, status)
		}
		if _, ok := c.NetConn().(*tls.Conn); !ok {
			t.Fatalf("dial %s: not a TLS connection", url)
		}
		return c
	}
	for _, p := range peersUnderTest(t) {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			pr := start(t, p, "echo", "-tls-cert", cert, "-tls-key", key)
			c := dialTLS(t, "wss://localhost:"+port(pr.addr)+"/any")
			for _, tc := range []struct {
				mt   int
				size int
			}{{websocket.TextMessage, 125}, {websocket.BinaryMessage, 70000}, {websocket.BinaryMessage, 1 << 20}} {
				msg := bytes.Repeat([]byte{'h'}, tc.size)
				_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
				if err := c.WriteMessage(tc.mt, msg); err != nil {
					t.Fatalf("write %d bytes: %v", tc.size, err)
				}
				_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
				mt, got, err := c.ReadMessage()
				if err != nil || mt != tc.mt || !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes (type %d): type %d, %d bytes, %v", tc.size, tc.mt, mt, len(got), err)
				}
			}
			pr.stop(t, c)

			pr = start(t, p, "ticker", "-interval", "50ms", "-symbols", "2", "-size", "128", "-tls-cert", cert, "-tls-key", key)
			c = dialTLS(t, "wss://localhost:"+port(pr.addr)+"/ws")
			readTicks(t, c, []string{"S0", "S1"}, 4, 0)
			pr.stop(t, c)
		})
	}
}

// port is the port of a HOST:PORT address.
func port(addr string) string {
	return addr[bytes.LastIndexByte([]byte(addr), ':')+1:]
}
