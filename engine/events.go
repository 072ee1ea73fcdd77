package engine

import (
	"errors"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"github.com/heraldws/herald/codec"
	"github.com/heraldws/herald/pool"
	"github.com/heraldws/herald/upgrade"
)

// events adapts the Server to gnet's callbacks. It is unexported so that the
// gnet methods stay out of herald's public API.
type events struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (e *events) OnBoot(eng gnet.Engine) gnet.Action {
	s := e.s
	s.eng = eng
	if s.cfg.Addr != "" { // else mounted only: the listener is internal
		addr, err := listenAddr(eng)
		if err != nil {
			s.log.Warn("herald: cannot read the listen address", "err", err)
		}
		s.addr = addr
	}
	close(s.booted)
	return gnet.None
}

func (e *events) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := e.s
	m, _ := gc.Context().(*mount) // handed over by ServeHTTP, already upgraded
	if s.draining.Load() {
		if m != nil {
			return e.refuseMount(gc, m), gnet.Close
		}
		return nil, gnet.Close
	}
	l := s.loopOf(gc.EventLoop())
	now := l.tick()
	remote := gc.RemoteAddr()
	if m != nil {
		remote = s.mnt.adoptAddrs(gc)
	}
	c := &Conn{
		gc:       gc,
		loop:     l,
		fd:       int32(gc.Fd()),
		remote:   remote,
		id:       s.nextID.Add(1),
		lastRead: now,
		lastMsg:  now,
		deadline: now + s.cfg.HandshakeTimeout,
	}
	if s.tlsCfg != nil && m == nil {
		c.set(bitTLS, true)
	}
	gc.SetContext(c)
	l.add(c)
	notePeak(&s.activePeak, s.active.Add(1))
	l.stats.accepted.Add(1)
	if m != nil {
		return e.openMount(c, m) // its limits were applied before the upgrade
	}
	if !s.admitAccepted(c) {
		return nil, gnet.Close
	}
	return nil, gnet.None
}

func (e *events) OnTraffic(gc gnet.Conn) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil {
		return gnet.Close
	}
	buf, _ := gc.Peek(-1)
	c.lastRead = c.loop.tick()
	c.set(bitPinged, false)
	if c.has(bitTLS) {
		return e.tlsTraffic(c, gc, buf)
	}
	action := gnet.None
	switch c.state {
	case stateHandshake:
		if w := c.waiting(); w != nil {
			action = e.parkedRead(c, w, buf) // its hooks run on a worker
			break
		}
		if c.has(bitAwaitProxy) {
			var ok bool
			if buf, ok = e.proxyHeader(c, buf); !ok {
				return c.proxyAction()
			}
		}
		var consumed int
		consumed, action = e.handshake(c, buf)
		if consumed < 0 {
			return gnet.None // need more: keep the bytes in gnet's buffer
		}
		if action == gnet.None && consumed < len(buf) {
			action = e.readFrames(c, buf[consumed:])
		}
	case stateOpen, stateClosing:
		action = e.readFrames(c, buf)
	}
	// Everything was consumed (partial frames live in the decoder), so gnet
	// keeps no bytes for this connection between reads.
	_, _ = gc.Discard(len(buf))
	c.loop.stats.bytesIn.Add(uint64(len(buf)))
	if c.state == stateClosed {
		return gnet.Close
	}
	return action
}

// handshake feeds the buffered request bytes to the upgrader. It returns the
// bytes consumed by the request head, or -1 when the head is incomplete.
func (e *events) handshake(c *Conn, buf []byte) (int, gnet.Action) {
	res := e.s.step(c, buf)
	switch res.Kind {
	case upgrade.NeedMore:
		return -1, gnet.None
	case upgrade.Deferred:
		// The hooks run on a handshake worker; the rest waits with them.
		return len(buf), e.park(c, res, buf[res.Consumed:])
	}
	if action := e.s.completeHandshake(c, res, false); action != gnet.None {
		return len(buf), action
	}
	return res.Consumed, gnet.None
}

// completeHandshake acts on a decided handshake: the refusal or HTTP reply
// and the close, or the upgrade and OnOpen. It returns gnet.Close when c
// must close. reported says that a panic in a hook was reported already.
func (s *Server) completeHandshake(c *Conn, res upgrade.Result, reported bool) gnet.Action {
	// Count before replying, so that a client that has seen the reply also
	// sees it counted.
	switch res.Kind {
	case upgrade.Upgraded:
		c.loop.stats.upgraded.Add(1)
	case upgrade.ServedHTTP:
		c.loop.stats.httpServed.Add(1)
		c.state = stateClosed
	default:
		c.loop.stats.rejected.Add(1)
		if errors.Is(res.Err, upgrade.ErrPanic) {
			if !reported {
				s.reportPanic(nil, handshakePanic(res.Err))
			}
		} else {
			s.log.Debug("herald: handshake rejected", "remote", addrString(c.remote), "status", res.Status, "err", res.Err)
		}
		c.state = stateClosed
	}
	if c.state == stateClosed {
		if res.Response != nil {
			c.loop.stats.bytesOut.Add(uint64(len(res.Response.B)))
			_ = c.gnetWrite(res.Response.B)
			pool.Put(res.Response)
		}
		return gnet.Close
	}
	if !s.becomeOpen(c, &res) {
		return gnet.Close
	}
	return gnet.None
}

// becomeOpen makes c, whose handshake res upgraded, an open WebSocket
// connection: it takes on the negotiated subprotocol, extension and
// session, and runs OnOpen with the 101 held back until OnOpen returns.
// Native and mounted connections (ServeHTTP) both become open here. It
// reports false if c was closed meanwhile.
func (s *Server) becomeOpen(c *Conn, res *upgrade.Result) bool {
	c.state = stateOpen
	c.opened = true
	s.limitsOpened(c)
	s.open.Add(1)
	if res.Session != nil {
		c.SetSession(res.Session)
	}
	c.proto = s.protoIndex(res.Subprotocol)
	if res.Compression {
		c.deflate = deflateFull
		if res.DeflateWindow < 15 {
			c.deflate = deflateHuffman
		}
		c.loop.stats.deflateNegotiated.Add(1)
	}
	c.lastMsg = c.loop.now
	c.req = res.Request
	// The 101 waits until OnOpen has run (see connAux.hello).
	if c.aux == nil {
		c.aux = c.loop.newAux()
	}
	c.aux.hello = res.Response
	s.dispatchOpen(c)
	return c.state != stateClosed
}

// readFrames decodes every frame in p and acts on it, with c's own decoder
// if a frame or message was left unfinished by the previous read, else with
// the loop's.
func (e *events) readFrames(c *Conn, p []byte) gnet.Action {
	if c.has(bitDecDead) {
		return gnet.None // discarding until the peer closes
	}
	l := c.loop
	d := l.decoderFor(c)
	action := e.decodeFrames(c, d, p)
	c.sendPongs()
	l.settleDecoder(c, d)
	return action
}

// decodeFrames is readFrames with the decoder d.
func (e *events) decodeFrames(c *Conn, d *codec.Decoder, p []byte) gnet.Action {
	s := e.s
	for len(p) > 0 {
		if c.state == stateClosed {
			return gnet.Close
		}
		if c.has(bitDecDead) {
			return gnet.None // discarding until the peer closes
		}
		n, ev, err := d.Decode(p)
		p = p[n:]
		if err != nil {
			c.loop.stats.protocolErrors.Add(1)
			c.set(bitDecDead, true)
			code, reason := StatusProtocolError, err.Error()
			if pe, ok := err.(*codec.ProtocolError); ok {
				code, reason = StatusCode(pe.Code), pe.Reason
			}
			c.sendPongs() // before the close frame: nothing may follow it
			c.startClose(code, reason, true)
			return gnet.None
		}
		switch ev.Op {
		case 0:
			return gnet.None
		case ws.OpText, ws.OpBinary:
			if c.state != stateOpen {
				continue // the close handshake has started: data is discarded
			}
			c.lastMsg = c.loop.now
			c.loop.stats.messagesIn.Add(1)
			if c.has(bitReadLimited) && !s.readAllowed(c, len(ev.Payload)) {
				continue
			}
			if ev.Compressed {
				c.loop.stats.compressedIn.Add(1)
			}
			c.sendPongs() // pings before a message are answered before what it causes
			s.dispatchMessage(c, MessageType(ev.Op), ev.Payload)
		case ws.OpPing:
			if c.state == stateOpen {
				l := c.loop
				l.lastPong = len(l.pongs)
				l.pongs = codec.AppendFrame(l.pongs, opPong, ev.Payload)
				if s.pingH != nil {
					s.onPing(c, ev.Payload)
				}
			}
		case ws.OpPong:
			if s.pongH != nil && c.state == stateOpen {
				s.onPong(c, ev.Payload)
			}
		case ws.OpClose:
			if c.state == stateOpen {
				// The peer started the close: echo its code, then close
				// TCP, as RFC 6455 asks of a server.
				code, reason, _ := codec.ParseClose(ev.Payload)
				ce := &CloseError{Code: StatusCode(code), Reason: string(reason), Remote: true}
				c.setCloseErr(ce)
				c.sendPongs() // before the close frame: nothing may follow it
				c.writeClose(ce.Code, ce.Reason)
			}
			c.state = stateClosed
			c.closed.Store(true)
			return gnet.Close
		}
	}
	return gnet.None
}

func (e *events) OnClose(gc gnet.Conn, err error) gnet.Action {
	c, _ := gc.Context().(*Conn)
	if c == nil {
		return gnet.None
	}
	gc.SetContext(nil)
	s := e.s
	c.state = stateClosed
	c.closed.Store(true)
	c.loop.remove(c)
	c.loop.dropDecoder(c)
	if c.has(bitTLS) {
		c.loop.closeTLS(c)
	}
	c.account(0)
	s.limitsClosed(c)
	why := c.closeReason(err)
	if w := c.waiting(); w != nil {
		c.unpark(w, ErrClosed) // the hooks' late answer is dropped
	}
	if a := c.aux; a != nil {
		pool.Put(a.hello)
		c.aux = nil
		c.loop.freeAux(a)
	}
	s.active.Add(-1)
	if c.opened {
		s.open.Add(-1)
		c.loop.stats.closes[closeSlot(closeCode(why))].Add(1)
		for _, hook := range *s.closeHooks.Load() {
			hook((*linkConn)(c))
		}
		s.dispatchClose(c, why)
	}
	return gnet.None
}

// ---- handler dispatch: on the loop, or on the worker pool ----
//
// Every call into the user's handler goes through a method below whose
// deferred recoverHandler turns a panic into a logged, counted 1011 close of
// that connection alone.

func (s *Server) dispatchOpen(c *Conn) {
	if s.workers == nil {
		s.onOpen(c)
		c.releaseRequest()
		c.sendHello()
		return
	}
	c.serial = new(pool.Serial)
	s.workers.Submit(c.serial, func() {
		s.onOpen(c)
		c.releaseRequest()
		// Subscriptions OnOpen made were posted to the loop before this.
		_ = c.loop.post(task{kind: taskHello, c: c})
	})
}

func (s *Server) dispatchMessage(c *Conn, typ MessageType, data []byte) {
	if s.workers == nil {
		s.onMessage(c, typ, data)
		return
	}
	// A connection whose handler cannot keep up must not queue without
	// bound: it is told to come back later.
	if c.serial.Len() >= s.cfg.WorkerQueue {
		c.loop.stats.workerBacklogClosed.Add(1)
		c.startClose(StatusTryAgainLater, "handler backlog limit exceeded", false)
		return
	}
	// The payload lives in a loop buffer: the worker gets its own copy.
	buf := pool.Get(len(data))
	buf.B = append(buf.B, data...)
	s.workers.Submit(c.serial, func() {
		s.onMessage(c, typ, buf.B)
		pool.Put(buf)
	})
}

func (s *Server) dispatchClose(c *Conn, err error) {
	if s.workers == nil {
		s.onClose(c, err)
		return
	}
	s.workers.Submit(c.serial, func() { s.onClose(c, err) })
}

func (s *Server) onOpen(c *Conn) {
	defer s.recoverHandler(c, "OnOpen")
	s.handler.OnOpen(c)
}

func (s *Server) onMessage(c *Conn, typ MessageType, data []byte) {
	defer s.recoverHandler(c, "OnMessage")
	s.handler.OnMessage(c, typ, data)
}

func (s *Server) onClose(c *Conn, err error) {
	defer s.recoverHandler(c, "OnClose")
	s.handler.OnClose(c, err)
}

func (s *Server) onPing(c *Conn, data []byte) {
	defer s.recoverHandler(c, "OnPing")
	s.pingH.OnPing(c, data)
}

func (s *Server) onPong(c *Conn, data []byte) {
	defer s.recoverHandler(c, "OnPong")
	s.pongH.OnPong(c, data)
}
