package app

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldws/herald/internal/testpki"
)

// With -tls-cert and -tls-key the page comes over https and the ticks
// over wss://, on the one port, as a browser on an https page needs them.
func TestTickerTLS(t *testing.T) {
	pki, err := testpki.NewLoopback()
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := testpki.PEM(pki.Server)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tk, err := New(Options{Addr: "127.0.0.1:0", Interval: 20 * time.Millisecond, Symbols: 2, Size: 128, Publish: true,
		TLSCert: certFile, TLSKey: keyFile}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_ = tk.Shutdown(ctx)
	})
	addr := tk.Addr().String()

	httpc := &http.Client{Timeout: hangGuard, Transport: &http.Transport{TLSClientConfig: pki.ClientConfig()}}
	res, err := httpc.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(page), "<html") {
		t.Fatalf("GET / over https: %s, %.80q", res.Status, page)
	}
	// Plain HTTP to the TLS port is told what is wrong, as net/http does.
	res, err = (&http.Client{Timeout: hangGuard}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("plain GET on the TLS port: %v, want a 400", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET on the TLS port: %s, want 400", res.Status)
	}

	d := ws.Dialer{Timeout: hangGuard, TLSConfig: pki.ClientConfig()}
	conn, br, _, err := d.Dial(context.Background(), "wss://"+addr+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, ok := conn.(*tls.Conn); !ok {
		t.Fatalf("a %T, want a TLS connection", conn)
	}
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	var r io.Reader = conn
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	last := map[string]int64{}
	for len(last) < 2 || minSeqSeen(last) < 3 {
		data, err := wsutil.ReadServerText(struct {
			io.Reader
			io.Writer
		}{r, conn})
		if err != nil {
			t.Fatal(err)
		}
		var m tick
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("%v: %s", err, data)
		}
		if prev, ok := last[m.Sym]; ok && m.Seq != prev+1 {
			t.Fatalf("%s: seq %d after %d", m.Sym, m.Seq, prev)
		}
		last[m.Sym] = m.Seq
	}
}

func TestTickerTLSFlagsGoTogether(t *testing.T) {
	_, err := New(Options{Addr: "127.0.0.1:0", Interval: time.Second, Symbols: 1, Size: 128, Publish: true, TLSCert: "cert.pem"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("-tls-cert alone: %v", err)
	}
	_, err = New(Options{Addr: "127.0.0.1:0", Interval: time.Second, Symbols: 1, Size: 128, Publish: true, TLSCert: "missing.pem", TLSKey: "missing.key"},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Fatalf("missing files: %v", err)
	}
}
