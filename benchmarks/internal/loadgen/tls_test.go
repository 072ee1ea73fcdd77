package loadgen

import (
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldws/herald/internal/testpki"
)

// testCert writes a loopback certificate, its key and its CA to a temp
// dir and returns the three files.
func testCert(t *testing.T) (cert, key, ca string) {
	t.Helper()
	lb, err := testpki.NewLoopback()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := testpki.PEM(lb.Server)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: lb.CA.Cert.Raw})
	dir := t.TempDir()
	cert, key, ca = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
	for f, b := range map[string][]byte{cert: certPEM, key: keyPEM, ca: caPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cert, key, ca
}

// TestTLSAgainstHeraldEcho: echo and churn over wss:// against herald's
// echo example with a certificate made for the test. Every connection
// comes up through a verified handshake, every echo comes back whole and
// churn cycles (a handshake each, resumed from the shared cache) complete.
func TestTLSAgainstHeraldEcho(t *testing.T) {
	if testing.Short() {
		t.Skip("builds herald's echo example")
	}
	cert, key, ca := testCert(t)
	addr := herald(t, "echo", "-tls-cert", cert, "-tls-key", key)
	tlsCfg, err := ClientTLS(ca, "localhost", false, true)
	if err != nil {
		t.Fatal(err)
	}
	src, _ := ParseAddrs("127.0.0.2-127.0.0.5")
	cases := []struct {
		name string
		cfg  Config
	}{
		{"echo", Config{Scenario: Echo, Conns: 40, Loops: 2, Size: 3000, Inflight: 2}},
		{"churn", Config{Scenario: Churn, Conns: 4, ChurnConc: 4, Path: "/", ChurnPath: "/"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Addr, cfg.Src, cfg.TLS = addr, src, tlsCfg
			cfg.Duration, cfg.Warmup, cfg.ConnectTimeout = time.Second, 200*time.Millisecond, 60*time.Second
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if res.Connected != cfg.Conns || res.ProtocolErrors != 0 || res.Dropped != 0 {
				t.Fatalf("%+v", res)
			}
			if res.TLSHandshakes != int64(cfg.Conns) {
				t.Fatalf("%d TLS handshakes in the connect phase, want %d", res.TLSHandshakes, cfg.Conns)
			}
			switch cfg.Scenario {
			case Echo:
				// Any number of echoes proves the path; how many is the machine's speed.
				if res.Received == 0 || res.BytesReceived != res.Received*int64(cfg.Size) {
					t.Fatalf("echo: %d received, %d bytes", res.Received, res.BytesReceived)
				}
			case Churn:
				if res.ChurnCycles == 0 {
					t.Fatalf("churn: no cycle completed: %v", res.Errors)
				}
			}
		})
	}
}
