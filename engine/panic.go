package engine

import (
	"errors"
	"runtime/debug"
)

// recoverHandler is deferred around every call into user code that concerns
// one connection. A panic there costs that connection only: it is logged
// with its stack, counted, handed to Config.OnPanic, and the connection is
// closed with 1011. It must be the deferred function itself, for recover to
// see the panic.
func (s *Server) recoverHandler(c *Conn, hook string) {
	v := recover()
	if v == nil {
		return
	}
	s.reportPanic(c, &PanicError{Hook: hook, Value: v, Stack: debug.Stack()})
	if hook == "OnClose" {
		return // the connection is gone already
	}
	if c.loop.onLoop() {
		c.startClose(StatusInternalError, "internal error", false)
	} else {
		_ = c.Close(StatusInternalError, "internal error")
	}
}

// reportPanic logs, counts and hands on a recovered panic. c is nil for a
// panic before the upgrade.
func (s *Server) reportPanic(c *Conn, p *PanicError) {
	s.panics.Add(1)
	attrs := []any{"hook", p.Hook, "panic", p.Value, "stack", string(p.Stack)}
	if c != nil {
		attrs = append(attrs, "conn", c.id, "remote", addrString(c.remote))
	}
	s.log.Error("herald: recovered a panic in user code", attrs...)
	if s.cfg.OnPanic != nil {
		s.callOnPanic(c, p)
	}
}

// callOnPanic runs Config.OnPanic; a panic in it is logged, not propagated.
func (s *Server) callOnPanic(c *Conn, p *PanicError) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("herald: recovered a panic in Config.OnPanic", "panic", v, "stack", string(debug.Stack()))
		}
	}()
	s.cfg.OnPanic(c, p)
}

// handshakePanic turns the error of a handshake refused for a panicking hook
// into the PanicError the server reports.
func handshakePanic(err error) *PanicError {
	var p *PanicError
	if errors.As(err, &p) {
		return p
	}
	return &PanicError{Hook: "handshake hook", Value: err}
}
