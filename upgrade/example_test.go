package upgrade_test

import (
	"fmt"
	"strings"

	"github.com/heraldws/herald/pool"
	"github.com/heraldws/herald/upgrade"
)

// An upgrader for a site whose pages live on other subdomains, with a token
// check. The engine calls Step with everything the connection has sent.
func Example() {
	up, err := upgrade.New(upgrade.Config{
		// Pages on any subdomain of example.com may connect; the same host
		// always may.
		OriginPatterns: []string{"*.example.com"},
		Authorize: func(r *upgrade.Request) (any, error) {
			if r.Query().Get("token") != "s3cret" {
				return nil, upgrade.ErrUnauthorized
			}
			return "alice", nil // kept on the connection
		},
		Subprotocols: []string{"chat.v2", "chat.v1"},
	})
	if err != nil {
		panic(err)
	}
	req := "GET /ws?token=s3cret HTTP/1.1\r\n" +
		"Host: api.example.com\r\n" +
		"Origin: https://app.example.com\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: chat.v1, chat.v2\r\n" +
		"\r\n"

	var st upgrade.State // one per handshaking connection
	res := up.Step(&st, []byte(req[:40]), nil)
	fmt.Println(res.Kind)

	res = up.Step(&st, []byte(req), nil)
	fmt.Println(res.Kind, res.Status, res.Subprotocol, res.Session, res.Consumed == len(req))
	fmt.Println(strings.SplitN(res.Response.String(), "\r\n", 2)[0])
	pool.Put(res.Response) // after writing it

	// Same request from a foreign page.
	res = up.Step(&st, []byte(strings.Replace(req, "app.example.com", "evil.example.org", 1)), nil)
	fmt.Println(res.Kind, res.Status, res.Err)
	pool.Put(res.Response)

	// Output:
	// NeedMore
	// Upgraded 101 chat.v2 alice true
	// HTTP/1.1 101 Switching Protocols
	// Rejected 403 herald: handshake refused with 403: origin not allowed (origin "https://evil.example.org", host "api.example.com")
}
