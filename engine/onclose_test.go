package engine

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/gobwas/ws"
)

// OnClose gets the errors its documentation names, told apart the way a
// service would: errors.As for a *CloseError, errors.Is for the rest.
func TestOnCloseErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		end   func(t *testing.T, s *Server, c *Conn, conn net.Conn)
		check func(err error) bool
	}{
		{"peer sends a close frame", func(t *testing.T, _ *Server, _ *Conn, conn net.Conn) {
			_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(1000, "done"))))
		}, func(err error) bool {
			var ce *CloseError
			return errors.As(err, &ce) && ce.Code == StatusNormalClosure && ce.Reason == "done" && ce.Remote
		}},
		{"peer goes away without a close frame", func(t *testing.T, _ *Server, _ *Conn, conn net.Conn) {
			_ = conn.Close()
		}, func(err error) bool { return errors.Is(err, io.EOF) }},
		{"peer resets the connection", func(t *testing.T, _ *Server, _ *Conn, conn net.Conn) {
			tcp := conn.(*net.TCPConn)
			_ = tcp.SetLinger(0) // close sends RST
			_ = tcp.Close()
		}, func(err error) bool { return errors.Is(err, syscall.ECONNRESET) }},
		{"server closes", func(t *testing.T, _ *Server, c *Conn, conn net.Conn) {
			_ = c.Close(4000, "bye")
			_ = expectClose(t, conn)
			_ = ws.WriteFrame(conn, ws.MaskFrameInPlace(ws.NewCloseFrame(ws.NewCloseFrameBody(4000, ""))))
		}, func(err error) bool {
			var ce *CloseError
			return errors.As(err, &ce) && ce.Code == 4000 && ce.Reason == "bye" && !ce.Remote
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRecorder()
			s := startServer(t, Config{}, r)
			conn := dial(t, s, "/", nil)
			if b, ok := conn.(bufferedConn); ok {
				conn = b.Conn
			}
			c := waitOpen(t, r)
			tc.end(t, s, c, conn)
			if err := waitClose(t, r); !tc.check(err) {
				t.Fatalf("OnClose err = %#v (%v)", err, err)
			}
		})
	}
}
