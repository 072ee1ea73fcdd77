package engine

import (
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// splitWrites writes data to w in pieces whose sizes come from splits
// (1 + each byte), the rest in one piece.
func splitWrites(w interface{ Write([]byte) (int, error) }, data, splits []byte) {
	for _, s := range splits {
		if len(data) == 0 {
			return
		}
		n := min(int(s)+1, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			return
		}
		data = data[n:]
	}
	if len(data) > 0 {
		_, _ = w.Write(data)
	}
}

// FuzzTLSFeed feeds a TLS server arbitrary bytes in arbitrary splits:
// before any TLS (mode 0: the record-header check and the handshake
// goroutine get them), or as the plaintext of records after a handshake
// (mode 1: the upgrade and the frame decoder get them through the record
// layer), or as raw bytes after a handshake (mode 2: the record layer on
// the loop gets them: herald's own after TLS 1.3 with AES-GCM, see
// tls_record.go), or as the plaintext of records that reach the server in
// arbitrary splits (mode 3: the record parser reassembles them). The
// server never panics, and once the client has gone
// it keeps nothing for it: no connection, no TLS state, no handshake in
// flight.
func FuzzTLSFeed(f *testing.F) {
	f.Add(uint8(0), []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), []byte{0, 0, 3})
	f.Add(uint8(0), []byte("\x16\x03\x01\x00\x10"+string(make([]byte, 16))), []byte{1, 2})
	f.Add(uint8(0), []byte("\x16\x03\x01\xff\xff"), []byte{})
	f.Add(uint8(1), []byte(upgradeRequest("/", "")+"\x81\x85abcd\x09\x07\x0f\x08\x0e"), []byte{0, 7, 40, 200})
	f.Add(uint8(1), []byte("GET /x HTTP/1.1\r\nHost: y\r\n\r\n"), []byte{10})
	f.Add(uint8(2), []byte("\x17\x03\x03\x00\x20"+string(make([]byte, 32))), []byte{0, 1, 2})
	f.Add(uint8(2), []byte("\x15\x03\x03\x00\x02\x01\x00"), []byte{})
	f.Add(uint8(2), []byte("\x17\x03\x03\x40\x11"), []byte{})
	f.Add(uint8(2), []byte("\x14\x03\x03\x00\x01\x01"), []byte{})
	f.Add(uint8(3), []byte(upgradeRequest("/", "")+"\x81\x85abcd\x09\x07\x0f\x08\x0e"), []byte{0, 0, 0, 3, 4, 200})
	f.Add(uint8(3), []byte(upgradeRequest("/", "")+"\x82\xfe\x01\x00abcd"+string(make([]byte, 256))), []byte{5, 0, 1})

	r := echoing()
	s := startTLS(f, Config{Loops: 1, HandshakeTimeout: time.Minute}, r)
	// Tickets make every handshake after the first a cheap resumption.
	client := loopbackPKI.ClientConfig()
	client.ClientSessionCache = tls.NewLRUClientSessionCache(8)

	f.Fuzz(func(t *testing.T, mode uint8, data, splits []byte) {
		if len(data) > 1<<16 || len(splits) > 1<<10 {
			return
		}
		raw, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = raw.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
		switch mode % 4 {
		case 0:
			splitWrites(raw, data, splits)
		case 1, 2, 3:
			h := &holdConn{Conn: raw}
			tc := tls.Client(h, client)
			if err := tc.Handshake(); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			switch mode % 4 {
			case 1:
				splitWrites(tc, data, splits)
			case 2:
				splitWrites(raw, data, splits)
			case 3:
				h.hold = true
				for len(data) > 0 { // records of up to 300 bytes
					n := min(len(data), 300)
					_, _ = tc.Write(data[:n])
					data = data[n:]
				}
				splitWrites(raw, h.take(), splits)
			}
		}
		raw.Close()
		waitFor(t, "the server to forget the client", func() bool {
			st := s.Stats()
			return st.Active == 0 && st.TLSHandshakesInFlight == 0
		})
		for _, lp := range *s.loopList.Load() {
			done := make(chan int)
			_ = lp.Post(func() { done <- len(lp.tlsConns) })
			if n := <-done; n != 0 {
				t.Fatalf("the loop keeps TLS state for %d connections after they closed", n)
			}
		}
	})
}
