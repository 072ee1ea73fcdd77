package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/heraldws/herald/internal/testpki"
	"github.com/heraldws/herald/internal/wsframe"
)

// writePair writes cert's PEM files into dir, as -tls-cert and -tls-key
// read them.
func writePair(t *testing.T, dir string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM, err := testpki.PEM(cert)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	// The key first: a reader that sees the new certificate finds its key.
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// dialTLS is dial over TLS, trusting roots; it returns the client and the
// serial number of the certificate the server showed.
func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*client, string) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: hangGuard}, "tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(hangGuard))
	c := &client{t: t, conn: conn, r: bufio.NewReader(conn)}
	key := wsframe.NewRequestKey()
	c.write(wsframe.AppendRequest(nil, addr, "/", key, "Origin: https://elsewhere.example"))
	head, err := wsframe.ReadHead(c.r)
	if err == nil {
		_, err = wsframe.ParseResponse(head, key)
	}
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return c, conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

// -tls-cert and -tls-key serve wss:// with a certificate for localhost made
// by the test; a certificate written over the files is served from the
// next connection on, without a restart.
func TestEchoTLS(t *testing.T) {
	pki, err := testpki.NewLoopback()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, pki.Server)
	addr, stderr := startRun(t, "-tls-cert", certFile, "-tls-key", keyFile)

	c, first := dialTLS(t, addr, pki.ClientConfig())
	msg := bytes.Repeat([]byte("wss "), 10000) // several records
	c.write(wsframe.AppendFrame(nil, wsframe.OpBinary, msg, wsframe.NewKey()))
	if op, p := c.next(); op != wsframe.OpBinary || !bytes.Equal(p, msg) {
		t.Fatalf("echo: opcode %#x, %d bytes; stderr:\n%s", op, len(p), stderr)
	}

	renewed, err := pki.CA.Server("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, dir, renewed)
	// A file system may keep the old modification time within its
	// granularity; the size check covers most of it, the wait the rest.
	deadline := time.Now().Add(hangGuard)
	for {
		_, serial := dialTLS(t, addr, pki.ClientConfig())
		if serial == renewed.Leaf.SerialNumber.String() {
			break
		}
		if serial != first || time.Now().After(deadline) {
			t.Fatalf("served serial %s, want the renewed %s", serial, renewed.Leaf.SerialNumber)
		}
		now := time.Now()
		_ = os.Chtimes(certFile, now, now)
	}
}

// -tls-cert without -tls-key, and TLS with -mount, are refused.
func TestEchoTLSFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-tls-cert", "cert.pem"},
		{"-tls-key", "key.pem"},
		{"-tls-cert", "cert.pem", "-tls-key", "key.pem", "-mount"},
	} {
		if code := run(t.Context(), args, &syncBuffer{}, &syncBuffer{}); code != 2 {
			t.Errorf("%v: exit status %d, want 2", args, code)
		}
	}
}
