package loadgen

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldws/herald/internal/wsframe"
)

// hostileServer is a hand-written WebSocket server for the hostile kinds.
// By request path, after the upgrade it
//
//	/flood  writes server frames as fast as the client takes them
//	/quiet  writes nothing
//	/close  sends a close frame with code 4001
//
// and in every mode reads and counts the client's frames by opcode. The
// test closes a connection's socket with closeAll.
type hostileServer struct {
	t      *testing.T
	addr   string
	mu     sync.Mutex
	conns  []*serverConn
	change chan struct{} // signalled on every count change
}

type serverConn struct {
	c       net.Conn
	written int64 // /flood: bytes the client's socket took before the write blocked
	blocked bool  // /flood: a write has waited 200 ms for the client
	frames  map[byte]int
	bad     string // a frame that was not what the kind sends
}

func newHostileServer(t *testing.T) *hostileServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &hostileServer{t: t, addr: ln.Addr().String(), change: make(chan struct{}, 1)}
	t.Cleanup(func() {
		ln.Close()
		s.closeAll()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *hostileServer) signal() {
	select {
	case s.change <- struct{}{}:
	default:
	}
}

func (s *hostileServer) serve(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		c.Close()
		return
	}
	sc := &serverConn{c: c, frames: map[byte]int{}}
	s.mu.Lock()
	s.conns = append(s.conns, sc)
	s.mu.Unlock()
	c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		wsframe.Accept(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"))
	s.signal()
	switch req.URL.Path {
	case "/flood":
		go func() {
			frame := append([]byte{0x82, 126, 0x04, 0x00}, make([]byte, 1024)...)
			buf := make([]byte, 0, 64*len(frame))
			for range 64 {
				buf = append(buf, frame...)
			}
			off := 0 // a write that timed out continues where it stopped
			for {
				c.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
				n, err := c.Write(buf[off:])
				off = (off + n) % len(buf)
				s.mu.Lock()
				sc.written += int64(n)
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					sc.blocked = true
				}
				s.mu.Unlock()
				if err != nil {
					s.signal()
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						continue
					}
					return
				}
			}
		}()
	case "/close":
		c.Write([]byte{0x88, 2, 0x0F, 0xA1}) // close 4001
	}
	// Count the client's frames: masked, as RFC 6455 requires.
	for {
		var h [2]byte
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return
		}
		n := int64(h[1] & 0x7F)
		switch n {
		case 126:
			var b [2]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			if _, err := io.ReadFull(br, b[:]); err != nil {
				return
			}
			n = int64(binary.BigEndian.Uint64(b[:]))
		}
		var key [4]byte
		if _, err := io.ReadFull(br, key[:]); err != nil {
			return
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(br, p); err != nil {
			return
		}
		for i := range p {
			p[i] ^= key[i%4]
		}
		op := h[0] & 0x0F
		s.mu.Lock()
		switch {
		case h[1]&0x80 == 0 || h[0]&0x80 == 0:
			sc.bad = "unmasked or fragmented frame"
		case op == wsframe.OpBinary && (len(p) != 300 || p[0] != 'a' || p[299] != 'a'+299%26):
			sc.bad = "streamed message of the wrong size or content"
		case op == wsframe.OpPing && string(p) != strings.Repeat("p", 16):
			sc.bad = "ping with the wrong payload"
		}
		sc.frames[op]++
		s.mu.Unlock()
		s.signal()
	}
}

// waitFor waits until cond (called with the server's lock held) holds,
// with a one-minute hang guard: no speed requirement.
func (s *hostileServer) waitFor(what string, cond func([]*serverConn) bool) {
	s.t.Helper()
	guard := time.NewTimer(time.Minute)
	defer guard.Stop()
	for {
		s.mu.Lock()
		ok := cond(s.conns)
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-s.change:
		case <-guard.C:
			s.t.Fatalf("hang guard: the server never saw %s", what)
		}
	}
}

func (s *hostileServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sc := range s.conns {
		sc.c.Close()
	}
}

func (s *hostileServer) check() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sc := range s.conns {
		if sc.bad != "" {
			s.t.Fatal(sc.bad)
		}
	}
}

// runHostile runs cfg in the background against s. The window ends when
// the returned function is called (Duration is only a hang guard); it then
// waits for the result. events receives every interval event's kinds.
func runHostile(t *testing.T, s *hostileServer, h Hostile, events func(map[string]*KindStats)) func() *Result {
	t.Helper()
	done := make(chan struct{})
	type out struct {
		res *Result
		err error
	}
	ch := make(chan out, 1)
	if h.CheckTimeout == 0 {
		h.CheckTimeout = 500 * time.Millisecond
	}
	cfg := Config{Scenario: Hold, Addr: s.addr, Hostile: h, Duration: time.Minute, WindowDone: done,
		StartAt: func() (time.Time, error) { return time.Now(), nil }}
	if events != nil {
		cfg.Interval = 20 * time.Millisecond
		cfg.Event = func(ev map[string]any) {
			if k, ok := ev["kinds"].(map[string]*KindStats); ok {
				events(k)
			}
		}
	}
	go func() {
		res, err := Run(context.Background(), cfg)
		ch <- out{res, err}
	}()
	var once sync.Once
	return func() *Result {
		once.Do(func() { close(done) })
		o := <-ch
		if o.err != nil {
			t.Fatal(o.err)
		}
		if len(o.res.Errors) > 0 {
			t.Logf("errors: %v", o.res.Errors)
		}
		return o.res
	}
}

func TestStallNeverReadsAndSeesTheServerClose(t *testing.T) {
	s := newHostileServer(t)
	finish := runHostile(t, s, Hostile{Stall: 3, Path: "/flood"}, nil)
	s.waitFor("every stalled subscriber's socket full", func(cs []*serverConn) bool {
		n := 0
		for _, c := range cs {
			if c.blocked {
				n++
			}
		}
		return n == 3
	})
	s.mu.Lock()
	for _, c := range s.conns {
		// A 4 KB window and a 1460-byte MSS keep what the server's
		// kernel queues small (loopback defaults would let it take MBs).
		if c.written > 1<<20 {
			t.Errorf("the server wrote %d bytes to a stalled subscriber before blocking", c.written)
		}
	}
	s.mu.Unlock()
	s.closeAll()
	res := finish()
	k := res.Kinds[KindStall]
	if k == nil || k.Conns != 3 || k.Connects != 3 || k.ServerClosed != 3 || k.Closes["eof"]+k.Closes["reset"] != 3 || k.Open != 0 {
		t.Fatalf("stall: %+v", k)
	}
	if k.BytesRead != 0 || k.BytesDrained == 0 || k.BytesSent != 0 {
		t.Fatalf("stall read %d bytes before its check (drained %d), sent %d", k.BytesRead, k.BytesDrained, k.BytesSent)
	}
}

func TestStallHoldEndsAndRedials(t *testing.T) {
	s := newHostileServer(t)
	finish := runHostile(t, s, Hostile{Stall: 2, Path: "/quiet", StallHold: 100 * time.Millisecond, Redial: true}, nil)
	s.waitFor("each stalled subscriber come back", func(cs []*serverConn) bool { return len(cs) >= 4 })
	res := finish()
	k := res.Kinds[KindStall]
	// The server never closed them: each hold ended with the client's close.
	if k.Connects < 4 || k.ClientClosed < 2 || k.ServerClosed != 0 {
		t.Fatalf("stall: %+v", k)
	}
}

func TestSlowReaderKeepsItsRateAndReadsACloseCode(t *testing.T) {
	s := newHostileServer(t)
	const rate = 4096
	start := time.Now()
	ready := make(chan struct{})
	var once sync.Once
	finish := runHostile(t, s, Hostile{SlowRead: 2, Path: "/flood", SlowReadRate: rate}, func(k map[string]*KindStats) {
		if k[KindSlowRead].BytesRead >= 2*rate/4 {
			once.Do(func() { close(ready) })
		}
	})
	select {
	case <-ready:
	case <-time.After(time.Minute):
		t.Fatal("hang guard: the slow readers never read")
	}
	res := finish()
	elapsed := time.Since(start)
	k := res.Kinds[KindSlowRead]
	// At most rate × time (plus one second's worth of credit) each; how
	// much less is the machine's speed.
	if limit := int64(2 * rate * (elapsed.Seconds() + 1)); k.BytesRead > limit {
		t.Fatalf("slow readers read %d bytes in %v, above %d", k.BytesRead, elapsed, limit)
	}
	if k.BytesDrained == 0 || k.Open != 2 {
		t.Fatalf("slowread: %+v", k)
	}

	// A close frame is read and its code counted.
	s2 := newHostileServer(t)
	closed := make(chan struct{})
	var once2 sync.Once
	finish = runHostile(t, s2, Hostile{SlowRead: 2, Path: "/close"}, func(k map[string]*KindStats) {
		if k[KindSlowRead].ServerClosed == 2 {
			once2.Do(func() { close(closed) })
		}
	})
	select {
	case <-closed:
	case <-time.After(time.Minute):
		t.Fatal("hang guard: the slow readers never saw the close")
	}
	k = finish().Kinds[KindSlowRead]
	if k.Closes["4001"] != 2 {
		t.Fatalf("slowread closes: %+v", k)
	}
}

func TestPongOnlySendsPongsAndNoticesTheClose(t *testing.T) {
	s := newHostileServer(t)
	gone := make(chan struct{})
	var once sync.Once
	finish := runHostile(t, s, Hostile{PongOnly: 2, Path: "/quiet"}, func(k map[string]*KindStats) {
		if k[KindPongOnly].ServerClosed == 2 {
			once.Do(func() { close(gone) })
		}
	})
	s.waitFor("two pongs on each connection", func(cs []*serverConn) bool {
		return len(cs) == 2 && cs[0].frames[wsframe.OpPong] >= 2 && cs[1].frames[wsframe.OpPong] >= 2
	})
	s.closeAll()
	select {
	case <-gone:
	case <-time.After(time.Minute):
		t.Fatal("hang guard: the pong-only connections never noticed the server's close")
	}
	res := finish()
	s.check()
	k := res.Kinds[KindPongOnly]
	if k.FramesSent < 4 || k.BytesRead != 0 || k.Closes["eof"]+k.Closes["reset"] != 2 {
		t.Fatalf("pongonly: %+v", k)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		if len(c.frames) != 1 {
			t.Fatalf("a pong-only connection sent %v", c.frames)
		}
	}
}

func TestPingFloodAndStreamer(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    Hostile
		op   byte
		kind string
	}{
		{"pingflood", Hostile{PingFlood: 2}, wsframe.OpPing, KindPingFlood},
		{"pingflood-paced", Hostile{PingFlood: 2, PingRate: 200}, wsframe.OpPing, KindPingFlood},
		{"streamer", Hostile{Streamer: 2, StreamSize: 300}, wsframe.OpBinary, KindStreamer},
		{"streamer-paced", Hostile{Streamer: 2, StreamSize: 300, StreamRate: 30000}, wsframe.OpBinary, KindStreamer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newHostileServer(t)
			tc.h.Path = "/quiet"
			start := time.Now()
			finish := runHostile(t, s, tc.h, nil)
			s.waitFor("50 frames on each connection", func(cs []*serverConn) bool {
				return len(cs) == 2 && cs[0].frames[tc.op] >= 50 && cs[1].frames[tc.op] >= 50
			})
			res := finish()
			elapsed := time.Since(start)
			s.check()
			k := res.Kinds[tc.kind]
			if k.FramesSent < 100 || k.BytesRead != 0 || k.Connects != 2 {
				t.Fatalf("%s: %+v", tc.kind, k)
			}
			// Paced: at most the rate (plus one second's credit).
			if tc.h.PingRate > 0 && float64(k.FramesSent) > 2*tc.h.PingRate*(elapsed.Seconds()+1) {
				t.Fatalf("%d pings in %v at %v/s", k.FramesSent, elapsed, tc.h.PingRate)
			}
			if tc.h.StreamRate > 0 && float64(k.BytesSent) > 2*float64(tc.h.StreamRate)*(elapsed.Seconds()+1) {
				t.Fatalf("%d bytes in %v at %v B/s", k.BytesSent, elapsed, tc.h.StreamRate)
			}
		})
	}
}

func TestHostileResultsMerge(t *testing.T) {
	a := &Result{Version: ResultVersion, Scenario: Hold, Kinds: map[string]*KindStats{KindStall: {Conns: 2, Connects: 3, ServerClosed: 1, Closes: map[string]int64{"eof": 1}}}}
	b := &Result{Version: ResultVersion, Scenario: Hold, Kinds: map[string]*KindStats{KindStall: {Conns: 1, Connects: 1, ServerClosed: 1, Closes: map[string]int64{"1008": 1}},
		KindPongOnly: {Conns: 4}}}
	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	st := m.Kinds[KindStall]
	if st.Conns != 3 || st.Connects != 4 || st.ServerClosed != 2 || st.Closes["eof"] != 1 || st.Closes["1008"] != 1 || m.Kinds[KindPongOnly].Conns != 4 {
		t.Fatalf("merged %+v", m.Kinds)
	}
	if a.Kinds[KindStall].Closes["1008"] != 0 {
		t.Fatal("merging changed its input")
	}
}
