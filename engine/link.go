package engine

import (
	"time"

	"github.com/heraldws/herald/internal/looplink"
)

// The door to the broadcast hub (package looplink): loop-only operations on
// types a user cannot name, so that engine's public API stays what a service
// calls.

func init() {
	looplink.ConnOf = func(c any) looplink.Conn { return (*linkConn)(c.(*Conn)) }
	looplink.ServerOf = func(s any) looplink.Server { return (*linkServer)(s.(*Server)) }
	looplink.SetClock = func(s any, now func() time.Duration) { s.(*Server).testClock.Store(&now) }
	looplink.Sweep = func(s any) {
		if ls, ok := s.(*linkServer); ok { // what a hub holds
			s = (*Server)(ls)
		}
		s.(*Server).sweepAll(true)
	}
}

// linkConn is a Conn seen through the door.
type linkConn Conn

func (c *linkConn) conn() *Conn { return (*Conn)(c) }

// Loop returns the connection's loop.
func (c *linkConn) Loop() looplink.Loop { return c.loop }

// IsOpen reports whether the connection is upgraded and not closing.
func (c *linkConn) IsOpen() bool { return c.state == stateOpen }

// Deflate reports whether the connection takes the hub's compressed
// frames: permessage-deflate with the full window. A connection that
// limited the server's window gets broadcasts uncompressed.
func (c *linkConn) Deflate() bool { return c.deflate == deflateFull }

// ID is the connection's id.
func (c *linkConn) ID() uint64 { return c.id }

// Buffered returns the bytes queued for the peer that it has not read.
func (c *linkConn) Buffered() int {
	if c.state == stateClosed {
		return 0
	}
	return c.conn().backlog()
}

// WriteFrames writes already encoded frames and marks the connection active.
func (c *linkConn) WriteFrames(b []byte, now time.Duration) bool {
	cc := c.conn()
	if !cc.writeEncoded(b) {
		return false
	}
	cc.lastMsg = now
	return true
}

// Close starts the close handshake with a code of the server's choosing.
func (c *linkConn) Close(code uint16, reason string) {
	c.conn().startClose(StatusCode(code), reason, false)
}

// linkServer is a Server seen through the door.
type linkServer Server

// OnConnClose registers fn to run on the loop when an upgraded connection
// closes, before Handler.OnClose.
func (s *linkServer) OnConnClose(fn func(looplink.Conn)) {
	srv := (*Server)(s)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	hooks := append(append([]func(looplink.Conn){}, *srv.closeHooks.Load()...), fn)
	srv.closeHooks.Store(&hooks)
}

// Closed reports whether Shutdown has begun.
func (s *linkServer) Closed() bool { return s.draining.Load() }

// MaxOutboundBytes is the per-connection outbound bound.
func (s *linkServer) MaxOutboundBytes() int { return s.cfg.MaxOutboundBytes }

// CompressMinSize is Config.Compression.MinSize.
func (s *linkServer) CompressMinSize() int { return s.cfg.Compression.MinSize }

// Now is the loops' timer clock.
func (s *linkServer) Now() time.Duration { return (*Server)(s).clock() }
