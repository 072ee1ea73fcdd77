package main

import (
	"context"
	"crypto/tls"
	"log/slog"

	"github.com/heraldws/herald/engine"
)

// maxMessage is the bench contract's message limit for the echo target.
const maxMessage = 64 << 20

// echoHandler sends every message back with its type. It runs on the event
// loop and writes directly: no copy, no goroutine.
type echoHandler struct {
	engine.BaseHandler
	log *slog.Logger
}

// OnOpen logs, at debug level (-v), whether the connection negotiated
// permessage-deflate.
func (h echoHandler) OnOpen(c *engine.Conn) {
	if h.log.Enabled(context.Background(), slog.LevelDebug) {
		h.log.Debug("herald echo: connection open", "remote", c.RemoteAddr().String(), "deflate", c.Compression())
	}
}

func (echoHandler) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	_ = c.Send(typ, data)
}

// defaultOutboundTotal bounds the unread echoes of all clients together:
// room for several whole 64 MiB echoes at once, not for hundreds of clients
// that never read.
const defaultOutboundTotal = 512 << 20

// newServer builds the echo server: any path, any Origin (it is an interop
// target that pages from other local origins must reach; herald's default is
// same-origin), messages up to 64 MiB, outbound memory bounded by budget,
// permessage-deflate as compression says, TLS (wss://) if tlsCfg is set.
func newServer(addr string, budget int64, compression engine.Compression, tlsCfg *tls.Config, logger *slog.Logger) (*engine.Server, error) {
	return engine.New(engine.Config{
		Addr:            addr,
		MaxMessageBytes: maxMessage,
		// Room for one whole 64 MiB echo and a little behind it: a client
		// that pipelines more without reading is not reading.
		MaxOutboundBytes: maxMessage + 1<<20,
		MaxOutboundTotal: budget,
		OriginPatterns:   []string{"*"},
		Compression:      compression,
		TLS:              tlsCfg,
		Logger:           logger,
	}, echoHandler{log: logger})
}
