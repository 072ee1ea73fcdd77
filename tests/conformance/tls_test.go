package conformance

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/internal/testpki"
)

// The suite over TLS: the cases of the groups below run unchanged against
// a server with Config.TLS, its client speaking TLS 1.3 (or 1.2) underneath. The cases
// split their writes as before; over TLS each write becomes a record, so
// the server's record layer hands the frames on in the same splits.

// tlsClients maps the address of a TLS server to the client config that
// dialTCP uses for it.
var tlsClients sync.Map // string -> *tls.Config

// dialConn opens a connection to addr: TCP, then TLS if addr is a TLS
// server of the suite.
func dialConn(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, hangGuard)
	if err != nil {
		return nil, err
	}
	cfg, ok := tlsClients.Load(addr)
	if !ok {
		return conn, nil
	}
	tc := tls.Client(conn, cfg.(*tls.Config))
	_ = tc.SetDeadline(time.Now().Add(hangGuard))
	if err := tc.Handshake(); err != nil {
		conn.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

var suitePKI = sync.OnceValue(func() *testpki.Loopback {
	l, err := testpki.NewLoopback()
	if err != nil {
		panic(err)
	}
	return l
})

// startTLSEcho is startEcho with TLS at version (the client's maximum).
func startTLSEcho(t *testing.T, version uint16) string {
	t.Helper()
	pki := suitePKI()
	_, addr := startServer(t, func(c *engine.Config) { c.TLS = pki.ServerConfig() })
	cfg := pki.ClientConfig()
	cfg.MaxVersion = version
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(16)
	tlsClients.Store(addr, cfg)
	t.Cleanup(func() { tlsClients.Delete(addr) })
	return addr
}

// tls12Groups are the groups that run over TLS 1.2 too.
var tls12Groups = map[string]bool{"handshake": true}

func TestOverTLS(t *testing.T) {
	t.Parallel()
	// The groups where the record layer's splits matter: frames and their
	// fragments cut anywhere, the close handshake, and the HTTP handshake
	// read from records. The rest (opcodes, UTF-8, limits, compression...)
	// are decided above the record layer on the same bytes; they stay
	// plain so that the suite keeps its time on a busy machine.
	groups := []struct {
		name  string
		cases func() []wsCase
	}{
		{"framing", framingCases}, {"fragmentation", fragmentationCases},
		{"close", closeCases}, {"handshake", handshakeCases},
	}
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			addr := startTLSEcho(t, v.version)
			for _, g := range groups {
				if v.version == tls.VersionTLS12 && !tls12Groups[g.name] {
					// The record layer works the same; the handshake is
					// what differs. (Framing writes 64 KiB a byte, so a
					// record, at a time: seconds per case.)
					continue
				}
				t.Run(g.name, func(t *testing.T) { runCasesAt(t, addr, g.cases()) })
			}
		})
	}
}
