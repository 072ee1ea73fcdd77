package engine

import "errors"

// ErrOnLoop is returned by Server.Conn when it is called on an event loop.
var ErrOnLoop = errors.New("herald: Server.Conn called on an event loop; call it from another goroutine")

// Conn returns the open connection with the given ID (Conn.ID), for an
// admin endpoint that kicks a user or a service that keeps IDs rather than
// pointers. It returns nil, nil when no open connection has that ID.
//
// Herald keeps no index by ID, so that an idle connection costs no map
// entry: Conn asks every loop to look through its connections (about a
// microsecond per thousand) and waits for their answers. Waiting on the
// loops from a loop could deadlock, so on an event loop (OnOpen, OnMessage
// or OnClose without Config.Workers) it returns ErrOnLoop; keep your own
// map there, or call it from a goroutine.
func (s *Server) Conn(id uint64) (*Conn, error) {
	loops := *s.loopList.Load()
	for _, l := range loops {
		if l.onLoop() {
			return nil, ErrOnLoop
		}
	}
	found := make(chan *Conn, len(loops))
	asked := 0
	for _, l := range loops {
		err := l.post(task{kind: taskFunc, fn: func() {
			found <- l.find(id)
		}})
		if err == nil {
			asked++
		}
	}
	var c *Conn
	for ; asked > 0; asked-- {
		select {
		case f := <-found:
			if f != nil {
				c = f
			}
		case <-s.stopped:
			return nil, ErrClosed // the loops stopped before answering
		}
	}
	return c, nil
}

// find returns the loop's open connection with the given ID, or nil. Loop
// only.
func (l *loop) find(id uint64) *Conn {
	for i := 0; i < l.conns.len(); i++ {
		if c := l.conns.at(i); c.id == id {
			if c.state != stateOpen {
				return nil
			}
			return c
		}
	}
	return nil
}
