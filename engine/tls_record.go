package engine

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"hash"
	"math"
	"reflect"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/valyala/bytebufferpool"

	"github.com/heraldws/herald/pool"
)

// Herald's own TLS 1.3 record layer (RFC 8446, section 5), used after a
// TLS 1.3 handshake with an AES-GCM suite. crypto/tls keeps a tls.Conn per
// connection with its two AES-GCM states (1,280 B each once built), its
// buffers and its handshake state: over 4 KB per idle connection, which
// none of its APIs releases. The handshake, the certificate checks and the
// key schedule stay crypto/tls's; once the handshake is over herald takes
// the application traffic secrets and the sequence numbers crypto/tls has
// reached, drops the tls.Conn and the pipe, and reads and writes the
// records itself: parse the 5-byte header, open or seal with the AEAD, the
// nonce the IV XOR the sequence number. An idle connection then holds only
// its secrets, keys, IVs and sequence numbers (tlsRec); each direction's
// AEAD is built when it is first needed and dropped again when that
// direction has been idle for tlsIdleCipher (the loop's sweep), and a
// rebuilt AEAD is the same function of the same key.
//
// TLS 1.2, ChaCha20-Poly1305, and a connection whose state cannot be taken
// (crypto/tls holds unread handshake bytes, or its fields moved: see
// tlsHalves) keep crypto/tls's record layer.

// tlsIdleCipher is how long a direction goes unused before its AEAD is
// dropped: a connection that gets a message every second or more often
// keeps its ciphers; one that is quiet longer pays a rebuild (a few
// microseconds and 1.3 KB of short-lived memory) when it next speaks.
const tlsIdleCipher = 2 * time.Second

// Record layer limits and codes (RFC 8446, sections 5.1, 5.2 and 6).
const (
	tlsMaxPlain  = 1 << 14        // the most plaintext a record carries
	tlsMaxCipher = 1<<14 + 256    // the most ciphertext a record may carry
	tlsTagLen    = 16             // AES-GCM's tag
	tlsNonceLen  = 12             // AES-GCM's nonce and TLS 1.3's IV
	maxUseless   = 16             // consecutive records without application data
	recAppData   = byte(23)       // content types
	recAlert     = byte(21)       //
	recHandshake = byte(22)       //
	msgKeyUpdate = byte(24)       // handshake message type
	alertClose   = byte(0)        // close_notify
	alertUnexp   = byte(10)       // unexpected_message
	alertBadMAC  = byte(20)       // bad_record_mac
	alertOverfl  = byte(22)       // record_overflow
	alertDecode  = byte(50)       // decode_error
	alertIllegal = byte(47)       // illegal_parameter
	alertVersion = byte(70)       // protocol_version
	tlsLegacyVer = uint16(0x0303) // legacy_record_version of every TLS 1.3 record
)

// tlsRec is a connection's record state once herald has taken it over:
// one allocation of 208 bytes (TestTLSRecSize), plus each direction's AEAD
// while it is in use. Loop only.
type tlsRec struct {
	rd, wr tlsDir
	// partial holds a record that has not arrived whole; nil at rest.
	partial *bytebufferpool.ByteBuffer
	sha384  bool  // the suite's hash: SHA-384 (AES-256-GCM) or SHA-256
	keyLen  uint8 // 16 or 32
	useless uint8 // records in a row that carried no application data
	alerted bool  // an alert (close_notify or fatal) was sent: no more
}

// tlsDir is one direction's traffic secret and what it derives. The key
// is not kept: it is derived again from the secret when the AEAD is
// rebuilt, which costs a microsecond on a path that allocates the AEAD
// anyway, and saves 32 bytes per direction on every idle connection.
type tlsDir struct {
	aead   cipher.AEAD // nil while the direction is idle
	last   time.Duration
	seq    uint64
	secret [48]byte // the current traffic secret (its first hash-length bytes)
	iv     [tlsNonceLen]byte
}

// tlsSuiteKey is the AES key length of a TLS 1.3 AES-GCM suite, 0 for
// another suite.
func tlsSuiteKey(suite uint16) int {
	switch suite {
	case tls.TLS_AES_128_GCM_SHA256:
		return 16
	case tls.TLS_AES_256_GCM_SHA384:
		return 32
	}
	return 0
}

func (r *tlsRec) hash() func() hash.Hash {
	if r.sha384 {
		return sha512.New384
	}
	return sha256.New
}

func (r *tlsRec) hashLen() int {
	if r.sha384 {
		return 48
	}
	return 32
}

// expandLabel is HKDF-Expand-Label (RFC 8446, section 7.1) with an empty
// context.
func (r *tlsRec) expandLabel(secret []byte, label string, n int) []byte {
	info := make([]byte, 0, 4+6+len(label))
	info = append(info, byte(n>>8), byte(n), byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0)
	out, err := hkdf.Expand(r.hash(), secret, string(info), n)
	if err != nil { // only for lengths no suite uses
		panic("herald: HKDF-Expand-Label: " + err.Error())
	}
	return out
}

// setSecret makes secret d's traffic secret: its IV, sequence 0, no AEAD
// until the next use (which derives the key).
func (r *tlsRec) setSecret(d *tlsDir, secret []byte) {
	copy(d.secret[:], secret)
	copy(d.iv[:], r.expandLabel(secret, "iv", tlsNonceLen))
	d.seq, d.aead = 0, nil
}

// update moves d to its next traffic secret (KeyUpdate, RFC 8446 section
// 7.2).
func (r *tlsRec) update(d *tlsDir) {
	n := r.hashLen()
	r.setSecret(d, r.expandLabel(d.secret[:n], "traffic upd", n))
}

// cipher returns d's AEAD, building it if it was dropped.
func (r *tlsRec) cipher(d *tlsDir) cipher.AEAD {
	if d.aead == nil {
		key := r.expandLabel(d.secret[:r.hashLen()], "key", int(r.keyLen))
		block, err := aes.NewCipher(key)
		if err == nil {
			d.aead, err = cipher.NewGCM(block)
		}
		if err != nil { // only for key lengths no suite uses
			panic("herald: AES-GCM: " + err.Error())
		}
	}
	return d.aead
}

// nonce is d's next per-record nonce (RFC 8446, section 5.3), in the
// loop's scratch: an argument of an interface method escapes, and a nonce
// on the stack would cost an allocation per record.
func (l *loop) nonce(d *tlsDir) []byte {
	n := &l.tlsNonce
	*n = d.iv
	for i := range 8 {
		n[tlsNonceLen-1-i] ^= byte(d.seq >> (8 * i))
	}
	return n[:]
}

// seal appends to out one record of content type typ carrying p (at most
// tlsMaxPlain bytes), encrypted under d, and returns it.
func (l *loop) seal(r *tlsRec, d *tlsDir, out []byte, typ byte, p []byte) []byte {
	n := len(p) + 1 + tlsTagLen
	h := len(out)
	if cap(out)-h < tlsRecordHeader+n {
		grown := make([]byte, h, h+tlsRecordHeader+n+h/4)
		copy(grown, out)
		out = grown
	}
	out = append(out, recAppData, byte(tlsLegacyVer>>8), byte(tlsLegacyVer&0xff), byte(n>>8), byte(n))
	out = append(out, p...)
	out = append(out, typ)
	body := out[h+tlsRecordHeader:]
	r.cipher(d).Seal(body[:0], l.nonce(d), body, out[h:h+tlsRecordHeader])
	d.seq++
	d.last = l.now
	return out[:h+tlsRecordHeader+n]
}

// recWrite encrypts b for c as records of at most 16 KiB of plaintext and
// writes them, given the bytes already queued. Loop only.
func (c *Conn) recWrite(r *tlsRec, queued int, typ byte, b []byte) error {
	l := c.loop
	out := l.tlsOut[:0]
	for len(b) > 0 || typ != recAppData {
		if r.wr.seq == math.MaxUint64 {
			return ErrClosed // a 2^64th record: never, in practice
		}
		k := min(len(b), tlsMaxPlain)
		out = l.seal(r, &r.wr, out, typ, b[:k])
		b = b[k:]
		if typ != recAppData {
			break
		}
	}
	l.tlsOut = out[:0]
	if cap(out) > maxLoopTLSOut {
		l.tlsOut = nil
	}
	if len(out) == 0 {
		return nil
	}
	return c.wireWrite(queued, out)
}

// recAlertClose sends a fatal alert (or close_notify) and marks c closed:
// the connection cannot go on. Loop only.
func (e *events) recAlertClose(c *Conn, r *tlsRec, desc byte) gnet.Action {
	if desc != alertClose {
		c.loop.stats.tlsErrors.Add(1)
	}
	c.recSendAlert(r, desc)
	c.state = stateClosed
	return gnet.Close
}

// recSendAlert sends an alert, once per connection: a fatal one, or
// close_notify, which tells the client that the end of the stream is
// meant, not a truncation.
func (c *Conn) recSendAlert(r *tlsRec, desc byte) {
	if r.alerted || r.wr.seq == math.MaxUint64 {
		return
	}
	r.alerted = true
	level := byte(2) // fatal
	if desc == alertClose {
		level = 1 // warning, as RFC 8446 section 6 has it
	}
	alert := [2]byte{level, desc}
	_ = c.recWrite(r, c.backlog(), recAlert, alert[:])
}

// tlsCloseNotify sends close_notify as herald closes c, if herald's record
// layer carries it (crypto/tls's would need its own lock-step). Loop only.
func (l *loop) tlsCloseNotify(c *Conn) {
	if t := l.tlsConns[c]; t != nil && t.rec != nil && t.phase == tlsOpen {
		c.recSendAlert(t.rec, alertClose)
	}
}

// recRecords opens every complete record of src (after the partial one
// kept from before) and hands their content on; the bytes of a record not
// complete yet wait in a pooled buffer. Loop only.
func (e *events) recRecords(c *Conn, t *tlsConn, src []byte) gnet.Action {
	r := t.rec
	opening := c.state == stateHandshake
	defer func() {
		if opening && c.state == stateOpen && r.partial == nil {
			// The upgrade is over. Most connections are quiet from
			// now on (a subscriber waits for its first message), so
			// their ciphers go now rather than after tlsIdleCipher:
			// after a burst of connects they are garbage the memory
			// return gives back, not live memory; a connection that
			// speaks builds them again once.
			r.rd.aead, r.wr.aead = nil, nil
		}
	}()
	action := gnet.None
	for action == gnet.None && c.state != stateClosed {
		if p := r.partial; p != nil {
			if len(p.B) < tlsRecordHeader {
				k := min(tlsRecordHeader-len(p.B), len(src))
				p.B = append(p.B, src[:k]...)
				src = src[k:]
				if len(p.B) < tlsRecordHeader {
					break
				}
				if desc := recCheckHeader(p.B); desc != 0 {
					return e.recAlertClose(c, r, desc)
				}
			}
			need := recLen(p.B) - len(p.B)
			k := min(need, len(src))
			p.B = append(p.B, src[:k]...)
			src = src[k:]
			if k < need {
				break
			}
			r.partial = nil
			action = e.recOpen(c, t, p.B)
			pool.Put(p)
			continue
		}
		if len(src) == 0 {
			break
		}
		if len(src) >= tlsRecordHeader {
			if desc := recCheckHeader(src); desc != 0 {
				return e.recAlertClose(c, r, desc)
			}
			if n := recLen(src); len(src) >= n {
				action = e.recOpen(c, t, src[:n])
				src = src[n:]
				continue
			}
		}
		size := tlsRecordHeader
		if len(src) >= tlsRecordHeader {
			size = recLen(src)
		}
		r.partial = pool.Get(size)
		r.partial.B = append(r.partial.B, src...)
		break
	}
	return action
}

// recLen is the length of the record whose header starts h.
func recLen(h []byte) int {
	return tlsRecordHeader + int(binary.BigEndian.Uint16(h[3:5]))
}

// recCheckHeader returns the alert a record header calls for, 0 if none:
// after the handshake every TLS 1.3 record is application_data on the
// outside (a change_cipher_spec is allowed only during the handshake), of
// version 0x0303, and its ciphertext at most 2^14+256 bytes.
func recCheckHeader(h []byte) byte {
	switch {
	case h[0] != recAppData:
		return alertUnexp
	case binary.BigEndian.Uint16(h[1:3]) != tlsLegacyVer:
		return alertVersion
	case recLen(h)-tlsRecordHeader > tlsMaxCipher:
		return alertOverfl
	}
	return 0
}

// open decrypts one whole record in place and returns its content and
// inner content type, or the alert it calls for (ok false).
func (l *loop) open(r *tlsRec, rec []byte) (p []byte, typ, alert byte, ok bool) {
	if r.rd.seq == math.MaxUint64 {
		return nil, 0, alertUnexp, false // a 2^64th record: never, in practice
	}
	ct := rec[tlsRecordHeader:]
	if len(ct) < tlsTagLen+1 {
		return nil, 0, alertBadMAC, false
	}
	p, err := r.cipher(&r.rd).Open(ct[:0], l.nonce(&r.rd), ct, rec[:tlsRecordHeader])
	if err != nil {
		return nil, 0, alertBadMAC, false
	}
	r.rd.seq++
	r.rd.last = l.now
	// TLSInnerPlaintext: content, its type, then zero padding.
	i := len(p) - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 {
		return nil, 0, alertUnexp, false
	}
	if i > tlsMaxPlain {
		return nil, 0, alertOverfl, false
	}
	return p[:i], p[i], 0, true
}

// recOpen decrypts one whole record in place and acts on its content.
func (e *events) recOpen(c *Conn, t *tlsConn, rec []byte) gnet.Action {
	r, l := t.rec, c.loop
	p, typ, alert, ok := l.open(r, rec)
	if !ok {
		return e.recAlertClose(c, r, alert)
	}
	if typ == recAppData && len(p) > 0 {
		r.useless = 0
		action := e.plaintext(c, t, p)
		if action == gnet.Close || c.state == stateClosed {
			c.recSendAlert(r, alertClose) // the close handshake is over, or the WebSocket failed
		}
		return action
	}
	if r.useless++; r.useless > maxUseless {
		return e.recAlertClose(c, r, alertUnexp)
	}
	switch typ {
	case recAppData:
		return gnet.None // empty: allowed, bounded by maxUseless
	case recAlert:
		if len(p) != 2 {
			return e.recAlertClose(c, r, alertDecode)
		}
		if p[1] == alertClose {
			// The client is done: so is the connection, with ours.
			return e.recAlertClose(c, r, alertClose)
		}
		l.stats.tlsErrors.Add(1) // every other alert ends a TLS 1.3 connection
		c.state = stateClosed
		return gnet.Close
	case recHandshake:
		return e.recKeyUpdate(c, r, p)
	}
	return e.recAlertClose(c, r, alertUnexp)
}

// recKeyUpdate handles a handshake record after the handshake: only a
// KeyUpdate (RFC 8446, section 4.6.3) is allowed from a client, whole in
// its record and last in it (a key change falls on a record boundary).
// A NewSessionTicket or any other message is unexpected. A KeyUpdate split
// over records, which no client sends, is refused the same way.
func (e *events) recKeyUpdate(c *Conn, r *tlsRec, p []byte) gnet.Action {
	if len(p) < 4 || p[0] != msgKeyUpdate {
		return e.recAlertClose(c, r, alertUnexp)
	}
	if n := int(p[1])<<16 | int(p[2])<<8 | int(p[3]); n != 1 {
		return e.recAlertClose(c, r, alertDecode)
	}
	if len(p) != 5 {
		return e.recAlertClose(c, r, alertUnexp)
	}
	requested := p[4]
	if requested > 1 {
		return e.recAlertClose(c, r, alertIllegal)
	}
	r.update(&r.rd)
	if requested == 1 {
		// Our own KeyUpdate goes under the old key, then the new one
		// takes over.
		msg := [5]byte{msgKeyUpdate, 0, 0, 1, 0}
		err := c.recWrite(r, c.backlog(), recHandshake, msg[:])
		r.update(&r.wr)
		if err != nil {
			c.state = stateClosed
			return gnet.Close
		}
	}
	return gnet.None
}

// tlsHibernate drops the AEAD of every direction that has been idle for
// tlsIdleCipher, at each sweep: the connection keeps its keys and builds
// the AEAD again when it is next used. Loop only.
func (l *loop) tlsHibernate(now time.Duration) {
	for _, t := range l.tlsConns {
		r := t.rec
		if r == nil {
			continue
		}
		if r.rd.aead != nil && now-r.rd.last >= tlsIdleCipher {
			r.rd.aead = nil
		}
		if r.wr.aead != nil && now-r.wr.last >= tlsIdleCipher {
			r.wr.aead = nil
		}
	}
}

// crypto/tls keeps a direction's record state in a halfConn (tls.Conn's in
// and out): the sequence number and, for TLS 1.3, the current traffic
// secret. Taking the record layer over needs both, and no API hands out a
// sequence number; so herald reads them, found once by name and type with
// reflect, as tls_trim.go reads the buffers. If a Go release moves them,
// no connection is taken over (they all keep crypto/tls's record layer,
// with its memory) and TestTLSRecordFieldsFound fails.
//
// Why not the public KeyLogWriter, which gets the traffic secrets? The
// sequence numbers have no public route anyway (the server's session
// tickets go out under its traffic key, so its write sequence is not 0),
// and a secret read from the halfConn is the one that goes with the
// sequence number read beside it, even if crypto/tls handled a KeyUpdate
// first; a per-handshake Config clone to carry a writer would also
// displace a user's own KeyLogWriter.
var tlsHalves = findTLSHalves()

type tlsHalfOffsets struct {
	ok      bool
	in, out uintptr // tls.Conn's halfConns
	// within a halfConn
	err, nextCipher, seq, secret uintptr
}

func findTLSHalves() tlsHalfOffsets {
	var o tlsHalfOffsets
	conn := reflect.TypeFor[tls.Conn]()
	in, ok1 := conn.FieldByName("in")
	out, ok2 := conn.FieldByName("out")
	if !ok1 || !ok2 || in.Type != out.Type || in.Type.Kind() != reflect.Struct || !tlsBufs.ok {
		return o
	}
	half := in.Type
	field := func(name string, typ reflect.Type) (uintptr, bool) {
		f, ok := half.FieldByName(name)
		return f.Offset, ok && f.Type == typ && len(f.Index) == 1
	}
	var ok [4]bool
	o.err, ok[0] = field("err", reflect.TypeFor[error]())
	o.nextCipher, ok[1] = field("nextCipher", reflect.TypeFor[any]())
	o.seq, ok[2] = field("seq", reflect.TypeFor[[8]byte]())
	o.secret, ok[3] = field("trafficSecret", reflect.TypeFor[[]byte]())
	o.in, o.out = in.Offset, out.Offset
	o.ok = ok[0] && ok[1] && ok[2] && ok[3]
	return o
}

// tlsHalf is what takeOver reads of one halfConn.
type tlsHalf struct {
	seq    uint64
	secret []byte
	ok     bool // no error, no pending cipher change
}

func readTLSHalf(conn *tls.Conn, off uintptr) tlsHalf {
	base := unsafe.Add(unsafe.Pointer(conn), off)
	err := *(*error)(unsafe.Add(base, tlsHalves.err))
	next := *(*any)(unsafe.Add(base, tlsHalves.nextCipher))
	seq := (*[8]byte)(unsafe.Add(base, tlsHalves.seq))
	secret := *(*[]byte)(unsafe.Add(base, tlsHalves.secret))
	return tlsHalf{seq: binary.BigEndian.Uint64(seq[:]), secret: secret, ok: err == nil && next == nil}
}

// takeOver replaces t's tls.Conn by herald's record layer if the
// handshake gave TLS 1.3 with an AES-GCM suite and crypto/tls holds no
// plaintext or handshake bytes unread. It returns the records crypto/tls
// had read from the pipe and not yet opened (the client may send its
// first records right behind its Finished), which the caller reads next.
// Loop only, once the handshake has ended.
func (t *tlsConn) takeOver() (raw []byte, ok bool) {
	conn := t.conn
	if !tlsHalves.ok || conn == nil {
		return nil, false
	}
	cs := conn.ConnectionState()
	keyLen := tlsSuiteKey(cs.CipherSuite)
	if cs.Version != tls.VersionTLS13 || keyLen == 0 {
		return nil, false
	}
	base := unsafe.Pointer(conn)
	rawIn := (*bytes.Buffer)(unsafe.Add(base, tlsBufs.rawInput))
	input := (*bytes.Reader)(unsafe.Add(base, tlsBufs.input))
	hand := (*bytes.Buffer)(unsafe.Add(base, tlsBufs.hand))
	if input.Len() != 0 || hand.Len() != 0 {
		return nil, false
	}
	r := &tlsRec{sha384: keyLen == 32, keyLen: uint8(keyLen)}
	in, out := readTLSHalf(conn, tlsHalves.in), readTLSHalf(conn, tlsHalves.out)
	if !in.ok || !out.ok || len(in.secret) != r.hashLen() || len(out.secret) != r.hashLen() {
		return nil, false
	}
	r.setSecret(&r.rd, in.secret)
	r.setSecret(&r.wr, out.secret)
	r.rd.seq, r.wr.seq = in.seq, out.seq
	raw = rawIn.Bytes()
	t.rec, t.cs, t.conn = r, &cs, nil
	return raw, true
}

// dropRec returns what t's record layer borrowed from the pools.
func (t *tlsConn) dropRec() {
	if r := t.rec; r != nil {
		pool.Put(r.partial)
		r.partial, r.rd.aead, r.wr.aead = nil, nil, nil
	}
}
