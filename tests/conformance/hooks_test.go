package conformance

import (
	"testing"

	"github.com/heraldws/herald/engine"
	"github.com/heraldws/herald/upgrade"
)

// TestHandshakeWithHooksOnWorkers runs the handshake and fragmentation
// cases again with an Authorize hook on handshake workers: a handshake that
// waits for its hook off the loop, with whatever the client pipelined kept
// meanwhile, must look to the client exactly like one decided on the loop.
func TestHandshakeWithHooksOnWorkers(t *testing.T) {
	t.Parallel()
	_, addr := startServer(t, func(c *engine.Config) {
		c.HandshakeWorkers = 2
		c.Authorize = func(*upgrade.Request) (any, error) { return nil, nil }
	})
	runCasesAt(t, addr, append(handshakeCases(), fragmentationCases()...))
}
