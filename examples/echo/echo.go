package main

import (
	"log/slog"

	"github.com/heraldws/herald/engine"
)

// maxMessage is the bench contract's message limit for the echo target.
const maxMessage = 64 << 20

// echoHandler sends every message back with its type. It runs on the event
// loop and writes directly: no copy, no goroutine.
type echoHandler struct {
	engine.BaseHandler
}

func (echoHandler) OnMessage(c *engine.Conn, typ engine.MessageType, data []byte) {
	_ = c.Send(typ, data)
}

// newServer builds the echo server: any path, any Origin (it is an interop
// target that pages from other local origins must reach; herald's default is
// same-origin), messages up to 64 MiB.
func newServer(addr string, logger *slog.Logger) (*engine.Server, error) {
	return engine.New(engine.Config{
		Addr:            addr,
		MaxMessageBytes: maxMessage,
		// Room for a whole 64 MiB echo plus what the client pipelines.
		MaxOutboundBytes: 2*maxMessage + 1<<20,
		OriginPatterns:   []string{"*"},
		Logger:           logger,
	}, echoHandler{})
}
