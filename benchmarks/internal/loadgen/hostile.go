package loadgen

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/heraldws/herald/internal/wsframe"
)

// The hostile and slow client kinds. Each holds connections beside the
// scenario's, on the same event loops; none is measured for latency.
const (
	KindStall     = "stall"     // upgrades, then never reads (4 KB receive buffer)
	KindSlowRead  = "slowread"  // reads at a fixed byte rate (4 KB receive buffer)
	KindPongOnly  = "pongonly"  // never reads, sends one unsolicited pong a second
	KindPingFlood = "pingflood" // sends pings as fast as allowed, never reads the pongs
	KindStreamer  = "streamer"  // sends data messages continuously, never reads
)

// Kinds lists the hostile kinds in report order.
var Kinds = []string{KindStall, KindSlowRead, KindPongOnly, KindPingFlood, KindStreamer}

// conn.kind values: 0 is a connection of the scenario.
const (
	kStall uint8 = iota + 1
	kSlowRead
	kPongOnly
	kPingFlood
	kStreamer
	nKinds = iota
)

// conn.flags bits.
const (
	fEverUp   uint8 = 1 << iota // hostile: upgraded at least once
	fChecking                   // hostile: reading what is queued to learn whether and how the server closed it
	fFinal                      // hostile: the check at the end of the run
	fRedial                     // hostile: waiting to connect again
)

const (
	// redialDelay is how long a hostile connection waits before it comes
	// back, so that a server that closes at once sees no reconnect storm.
	redialDelay = int64(time.Second)
	// floodChunk bounds what one flooding connection writes per event, so
	// that the loop stays fair to the others.
	floodChunk = 256 << 10
	// paceEvery is how often the loop paces its hostile connections (slow
	// reads, pongs, rate-limited floods, stall holds, redials).
	paceEvery = int64(50 * time.Millisecond)
)

// Hostile configures the hostile and slow clients of a run. Counts are over
// all shards, like Config.Conns.
type Hostile struct {
	Stall, SlowRead, PongOnly, PingFlood, Streamer int

	// Path is their request target (default: Config.Path).
	Path string
	// MSS is the maximum segment size the hostile connections advertise
	// (TCP_MAXSEG before connect; default 1460, as across Ethernet; -1:
	// the kernel's). On loopback the kernel would advertise 64 KiB, and
	// the server's kernel sizes a connection's send buffer from it: with
	// 64 KiB segments Linux lets each socket queue up to tcp_wmem's
	// maximum (4 MiB by default) for a peer that reads nothing, which
	// hides a stalled subscriber from the server for minutes and costs
	// kernel memory no real client would. With 1460 it is about 130 KB.
	MSS int
	// RcvBuf is the SO_RCVBUF of every hostile connection, set before
	// connect so that the window stays small (default 4096): the server
	// sees their backlog within seconds. A larger one lets the server's
	// kernel grow the socket's send buffer while the window is open, up
	// to tcp_wmem's maximum (MBs that a slow reader takes minutes to
	// read), before the server sees any backlog.
	RcvBuf int
	// StallHold is how long a stalled subscriber stalls before it reads
	// what is queued to learn whether the server closed it, then closes and
	// connects again (with Redial). Each hold is jittered by ±25 %. Zero:
	// it stalls until the run ends.
	StallHold time.Duration
	// SlowReadRate is the bytes per second each slow reader takes
	// (default 1024).
	SlowReadRate int
	// PingRate is the pings per second of each flooding connection; zero
	// sends them as fast as the socket takes them. PingSize is their
	// payload (default 16, at most 125).
	PingRate float64
	PingSize int
	// StreamRate is the bytes per second of each streamer; zero sends as
	// fast as the socket takes them. StreamSize is the size of each binary
	// message (default 1024).
	StreamRate int
	StreamSize int
	// Redial brings a connection the server closed back after a second, so
	// that the pressure lasts the whole run.
	Redial bool
	// CheckTimeout bounds a check — reading what is queued to learn
	// whether the server closed the connection — at the end of a stall's
	// hold and of the run (default 2 s): a server that closed it has sent
	// its close frame, EOF or reset by then.
	CheckTimeout time.Duration
}

func (h *Hostile) total() int { return h.Stall + h.SlowRead + h.PongOnly + h.PingFlood + h.Streamer }

func (h *Hostile) count(k uint8) int {
	switch k {
	case kStall:
		return h.Stall
	case kSlowRead:
		return h.SlowRead
	case kPongOnly:
		return h.PongOnly
	case kPingFlood:
		return h.PingFlood
	case kStreamer:
		return h.Streamer
	}
	return 0
}

func (h *Hostile) setDefaults(path string) {
	if h.Path == "" {
		h.Path = path
	}
	if h.MSS == 0 {
		h.MSS = 1460
	}
	if h.RcvBuf <= 0 {
		h.RcvBuf = 4096
	}
	if h.SlowReadRate <= 0 {
		h.SlowReadRate = 1024
	}
	if h.PingSize <= 0 {
		h.PingSize = 16
	}
	if h.StreamSize <= 0 {
		h.StreamSize = 1024
	}
	if h.CheckTimeout <= 0 {
		h.CheckTimeout = 2 * time.Second
	}
}

func (h *Hostile) validate() error {
	for k := uint8(1); k <= nKinds; k++ {
		if h.count(k) < 0 {
			return fmt.Errorf("negative %s count", Kinds[k-1])
		}
	}
	if h.PingSize > 125 {
		return errors.New("ping payload over 125 bytes (a control frame's limit)")
	}
	if h.PingRate < 0 || h.StreamRate < 0 || h.StallHold < 0 {
		return errors.New("negative hostile rate or hold")
	}
	return nil
}

// KindStats counts what one hostile kind's connections did, over the whole
// run (connect phase included), not only the measured window.
type KindStats struct {
	Conns           int   `json:"conns"`            // connections asked of this shard
	Connects        int64 `json:"connects"`         // upgrades completed, reconnections included
	ConnectFailures int64 `json:"connect_failures"` // connection attempts that did not upgrade
	Open            int64 `json:"open"`             // upgraded and not known to be closed (at the end: still open)
	ServerClosed    int64 `json:"server_closed"`    // closed by the server
	// Closes says how the server closed them: its close code ("1008"),
	// "eof" (TCP closed without a close frame reaching the client) or
	// "reset".
	Closes map[string]int64 `json:"closes,omitempty"`
	// ClientClosed counts stalled subscribers the client closed at the end
	// of their hold because the server had not.
	ClientClosed   int64 `json:"client_closed"`
	BytesRead      int64 `json:"bytes_read"`    // read by slow readers, after the upgrade
	BytesDrained   int64 `json:"bytes_drained"` // read by checks (end of a stall's hold, a server closing, the end of the run)
	BytesSent      int64 `json:"bytes_sent"`    // after the upgrade
	FramesSent     int64 `json:"frames_sent"`
	ProtocolErrors int64 `json:"protocol_errors"`
}

// Add adds o's counters to s.
func (s *KindStats) Add(o *KindStats) {
	s.Conns += o.Conns
	s.Connects += o.Connects
	s.ConnectFailures += o.ConnectFailures
	s.Open += o.Open
	s.ServerClosed += o.ServerClosed
	s.ClientClosed += o.ClientClosed
	s.BytesRead += o.BytesRead
	s.BytesDrained += o.BytesDrained
	s.BytesSent += o.BytesSent
	s.FramesSent += o.FramesSent
	s.ProtocolErrors += o.ProtocolErrors
	for k, v := range o.Closes {
		if s.Closes == nil {
			s.Closes = map[string]int64{}
		}
		s.Closes[k] += v
	}
}

// String is a one-line summary.
func (s *KindStats) String() string {
	closes := ""
	keys := make([]string, 0, len(s.Closes))
	for k := range s.Closes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		closes += fmt.Sprintf(" %s×%d", k, s.Closes[k])
	}
	return fmt.Sprintf("%d conns, %d connects (%d failed), %d open, closed by server %d (%s), by client %d, read %d B, sent %d B",
		s.Conns, s.Connects, s.ConnectFailures, s.Open, s.ServerClosed, strings.TrimSpace(closes), s.ClientClosed, s.BytesRead, s.BytesSent)
}

// kindStats returns the loop's counters of c's kind; the caller holds l.mu.
func (l *loop) kindStats(c *conn) *KindStats { return &l.kinds[c.kind-1] }

// hostileOpened starts a hostile connection's behaviour after its upgrade.
func (l *loop) hostileOpened(c *conn, idx int32, now int64) {
	h := &l.e.cfg.Hostile
	if c.flags&fEverUp == 0 {
		c.flags |= fEverUp
		l.hostileUp.Add(1)
	}
	l.mu.Lock()
	ks := l.kindStats(c)
	ks.Connects++
	ks.Open++
	l.mu.Unlock()
	c.t0, c.moved, c.inflight, c.next = now, 0, 0, 0
	switch c.kind {
	case kStall:
		if h.StallHold > 0 {
			hold := int64(h.StallHold)
			c.next = now + hold*3/4 + int64(l.rand32())%(hold/2+1)
		}
	case kPongOnly:
		c.next = now + int64(time.Second)
	}
	l.setInterest(c, idx)
}

// interest is the epoll events c waits for, besides EPOLLOUT for its own
// queued bytes.
func (l *loop) interest(c *conn) uint32 {
	if c.kind == 0 || c.state != stOpen || c.flags&fChecking != 0 {
		return unix.EPOLLIN | unix.EPOLLRDHUP
	}
	// A hostile connection does not read: RDHUP (and the ERR and HUP that
	// epoll always reports) say the server is closing it.
	ev := uint32(unix.EPOLLRDHUP)
	h := &l.e.cfg.Hostile
	if (c.kind == kPingFlood && h.PingRate == 0) || (c.kind == kStreamer && h.StreamRate == 0) {
		ev |= unix.EPOLLOUT // send whenever the socket takes more
	}
	return ev
}

func (l *loop) setInterest(c *conn, idx int32) {
	if c.fd < 0 {
		return
	}
	ev := unix.EpollEvent{Events: l.interest(c), Fd: idx}
	if len(c.wbuf) > 0 {
		ev.Events |= unix.EPOLLOUT
	}
	c.outWatch = len(c.wbuf) > 0
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
}

// hostileHandshake reads the server's 101 without taking any frame that
// follows it: a connection that never reads must leave the frames to the
// kernel, and one that checks later parses them from a frame boundary.
func (l *loop) hostileHandshake(c *conn, idx int32, now int64) {
	n, _, err := unix.Recvfrom(int(c.fd), l.rb, unix.MSG_PEEK)
	if !l.readOK(c, idx, now, n, err) {
		return
	}
	head, err := wsframe.ParseResponse(l.rb[:n], l.key(c))
	if err != nil {
		end := min(n, 80)
		l.e.noteError("bad upgrade response ("+Kinds[c.kind-1]+"): "+err.Error(), "handshake from %s: %v: %q", l.e.host, err, l.rb[:end])
		l.mu.Lock()
		l.kindStats(c).ProtocolErrors++
		l.mu.Unlock()
		l.fail(c, idx, false)
		return
	}
	if head == 0 {
		return // the rest of the head is on its way
	}
	if _, err := unix.Read(int(c.fd), l.rb[:head]); err != nil {
		l.eof(c, idx, now, err.Error())
		return
	}
	c.state = stOpen
	l.pending--
	l.hostileOpened(c, idx, now)
}

// hostileEvent handles epoll events of an open hostile connection.
func (l *loop) hostileEvent(c *conn, idx int32, events uint32, now int64) {
	if events&(unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 && c.flags&fChecking == 0 {
		// The server is closing it: read what it sent to learn how.
		l.startCheck(c, idx, now, false)
	}
	if events&unix.EPOLLOUT != 0 && len(c.wbuf) > 0 {
		if !l.write(c, idx, nil) {
			return
		}
		if len(c.wbuf) == 0 {
			l.watchOut(c, idx, false)
		}
	}
	if c.flags&fChecking != 0 {
		if events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0 {
			l.hostileRead(c, idx, len(l.rb), now)
		}
		return
	}
	if events&unix.EPOLLOUT != 0 && len(c.wbuf) == 0 && (c.kind == kPingFlood || c.kind == kStreamer) {
		l.flood(c, idx, floodChunk, now)
	}
}

// startCheck makes c read everything queued for it, to learn whether the
// server closed it (close frame, EOF or reset) within checkTimeout.
func (l *loop) startCheck(c *conn, idx int32, now int64, final bool) {
	c.flags |= fChecking
	if final {
		c.flags |= fFinal
	}
	c.next = now + int64(l.e.cfg.Hostile.CheckTimeout)
	l.setInterest(c, idx)
}

// checkExpired ends a check that saw no close from the server.
func (l *loop) checkExpired(c *conn, idx int32, now int64) {
	if c.flags&fFinal != 0 {
		// Still open when the run ended: it stays counted as open.
		l.closeFD(c)
		c.state = stDone
		return
	}
	l.hostileGone(c, idx, now, "", false)
}

// hostileRead reads at most max bytes from c and parses them; it returns
// the bytes read.
func (l *loop) hostileRead(c *conn, idx int32, max int, now int64) int {
	n, err := unix.Read(int(c.fd), l.rb[:max])
	if err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return 0
		}
		l.hostileGone(c, idx, now, closeHow(err.Error()), true)
		return 0
	}
	if n == 0 {
		l.hostileGone(c, idx, now, "eof", true)
		return 0
	}
	l.mu.Lock()
	if c.flags&fChecking != 0 {
		l.kindStats(c).BytesDrained += int64(n)
	} else {
		l.kindStats(c).BytesRead += int64(n)
	}
	l.mu.Unlock()
	l.input(c, idx, l.rb[:n], now, true)
	return n
}

// closeHow names a transport-level end of a connection.
func closeHow(why string) string {
	switch why {
	case "EOF", "eof":
		return "eof"
	}
	return "reset"
}

// hostileGone records how an open hostile connection ended (how: a close
// code, "eof" or "reset") and schedules it to come back.
func (l *loop) hostileGone(c *conn, idx int32, now int64, how string, byServer bool) {
	if c.state == stOpen {
		l.mu.Lock()
		ks := l.kindStats(c)
		ks.Open--
		if byServer {
			ks.ServerClosed++
			if ks.Closes == nil {
				ks.Closes = map[string]int64{}
			}
			ks.Closes[how]++
		} else {
			ks.ClientClosed++
		}
		l.mu.Unlock()
	}
	final := c.flags&fFinal != 0
	l.closeFD(c)
	c.flags &^= fChecking | fFinal
	c.state = stIdle
	l.redial(c, now, final)
}

// redial brings c back after redialDelay when the run asks for it and is
// still going.
func (l *loop) redial(c *conn, now int64, final bool) {
	if l.e.cfg.Hostile.Redial && !final && l.e.phase.Load() < 2 {
		c.flags |= fRedial
		c.next = now + redialDelay
		return
	}
	c.state = stDone
}

// pace runs the timed part of the hostile connections: redials, checks
// that expired, stall holds, slow reads, pongs and rate-limited floods.
func (l *loop) pace(now int64) {
	h := &l.e.cfg.Hostile
	phase := l.e.phase.Load()
	open := 0
	defer func() {
		if phase == phCheck && open == 0 {
			l.checked.Store(true) // every final check has ended
		}
	}()
	for i := range l.conns {
		c := &l.conns[i]
		if c.kind == 0 {
			continue
		}
		idx := int32(i)
		switch c.state {
		case stIdle:
			if c.flags&fRedial != 0 && now >= c.next && phase < 2 {
				c.flags &^= fRedial
				l.dialQ = append(l.dialQ, idx)
			}
		case stOpen:
			open++
			if phase == phCheck && c.flags&fFinal == 0 {
				l.startCheck(c, idx, now, true)
				continue
			}
			if c.flags&fChecking != 0 {
				if now >= c.next {
					l.checkExpired(c, idx, now)
				}
				continue
			}
			switch c.kind {
			case kStall:
				if h.StallHold > 0 && now >= c.next {
					l.startCheck(c, idx, now, false)
				}
			case kSlowRead:
				if n := credit(c, int64(h.SlowReadRate), now); n > 0 {
					c.moved += int64(l.hostileRead(c, idx, int(min(n, int64(len(l.rb)))), now))
				}
			case kPongOnly:
				if now >= c.next {
					c.next = max(c.next+int64(time.Second), now)
					l.pong(c, idx, now)
				}
			case kPingFlood:
				if h.PingRate > 0 {
					frame := len(l.floodBuf(kPingFlood)) / floodFrames
					l.flood(c, idx, int(credit(c, int64(h.PingRate*float64(frame)), now)), now)
				}
			case kStreamer:
				if h.StreamRate > 0 {
					l.flood(c, idx, int(credit(c, int64(h.StreamRate), now)), now)
				}
			}
		}
	}
}

// credit is what a connection paced at rate bytes per second may move now:
// rate × time since it opened − what it moved, at most one second's worth
// (a connection that could not move for a while does not burst).
func credit(c *conn, rate int64, now int64) int64 {
	n := int64(float64(rate)*float64(now-c.t0)/1e9) - c.moved
	if n > rate {
		c.t0, c.moved = now-int64(time.Second), 0
		n = rate
	}
	return n
}

// pong sends one unsolicited, masked pong.
func (l *loop) pong(c *conn, idx int32, now int64) {
	l.wb = wsframe.AppendPong(l.wb[:0], nil, l.rand32())
	n, err := unix.Write(int(c.fd), l.wb)
	if err != nil {
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			l.startCheck(c, idx, now, false) // reset by the server: read what it sent first
		}
		return
	}
	l.mu.Lock()
	ks := l.kindStats(c)
	ks.BytesSent += int64(n)
	if n == len(l.wb) {
		ks.FramesSent++
	}
	l.mu.Unlock()
}

// floodFrames is the number of frames in a flood buffer.
const floodFrames = 256

// floodBuf returns the loop's buffer of back-to-back masked frames for a
// flooding kind, each with its own key: pings, or binary messages.
func (l *loop) floodBuf(kind uint8) []byte {
	h := &l.e.cfg.Hostile
	if kind == kPingFlood {
		if l.pingBuf == nil {
			p := make([]byte, h.PingSize)
			for i := range p {
				p[i] = 'p'
			}
			for range floodFrames {
				l.pingBuf = wsframe.AppendFrame(l.pingBuf, wsframe.OpPing, p, l.rand32())
			}
		}
		return l.pingBuf
	}
	if l.streamBuf == nil {
		p := make([]byte, h.StreamSize)
		for i := range p {
			p[i] = 'a' + byte(i%26)
		}
		n := max(4, min(floodFrames, (1<<20)/max(1, h.StreamSize)))
		for range n {
			l.streamBuf = wsframe.AppendFrame(l.streamBuf, wsframe.OpBinary, p, l.rand32())
		}
		l.streamFrames = n
	}
	return l.streamBuf
}

// flood writes up to budget bytes of c's kind's frames, continuing where
// the last write stopped (c.inflight is the offset in the flood buffer),
// until the socket takes no more.
func (l *loop) flood(c *conn, idx int32, budget int, now int64) {
	buf := l.floodBuf(c.kind)
	frames := floodFrames
	if c.kind == kStreamer {
		frames = l.streamFrames
	}
	frameLen := len(buf) / frames
	var sent, done int64
	for budget > 0 {
		off := int(c.inflight)
		chunk := buf[off:]
		if len(chunk) > budget {
			chunk = chunk[:budget]
		}
		n, err := unix.Write(int(c.fd), chunk)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if !errors.Is(err, unix.EAGAIN) {
				l.startCheck(c, idx, now, false)
			}
			break
		}
		done += int64((off%frameLen + n) / frameLen)
		sent += int64(n)
		budget -= n
		c.inflight = int32((off + n) % len(buf))
		if n < len(chunk) {
			break
		}
	}
	c.moved += sent
	if sent > 0 {
		l.mu.Lock()
		ks := l.kindStats(c)
		ks.BytesSent += sent
		ks.FramesSent += done
		l.mu.Unlock()
	}
}
