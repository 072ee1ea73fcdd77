package upgrade

import (
	"bytes"
	"unsafe"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws/wsflate"
)

// negotiateExtensions reads the Sec-WebSocket-Extensions lines and reports
// whether permessage-deflate is accepted. ok is false if a line does not
// parse as an extension list (RFC 6455 §9.1): that is a malformed request
// whether or not the server compresses, so it is refused either way.
//
// The grammar is httphead's and the decision wsflate's, so that what the
// codec is later told matches what wsflate agreed to: the offers are tried
// in the client's order and the first compatible one wins; an offer with
// bad parameters is declined, not fatal (RFC 7692 §5). An accepted offer is
// answered with Config.Compression's parameters, written once by New.
func (u *Upgrader) negotiateExtensions(lines []string) (accepted, ok bool) {
	var ext wsflate.Extension
	negotiate := u.cfg.Compression != nil
	if negotiate {
		ext.Parameters = *u.cfg.Compression
	}
	for _, line := range lines {
		var cur httphead.Option
		index := -1
		ok := httphead.ScanOptions(stringBytes(line), func(i int, name, attr, val []byte) httphead.Control {
			if i != index {
				if negotiate {
					offerDeflate(&ext, cur)
				}
				index = i
				cur = httphead.Option{Name: name}
			}
			if attr != nil {
				cur.Parameters.Set(attr, val)
			}
			return httphead.ControlContinue
		})
		if !ok {
			return false, false
		}
		if negotiate {
			offerDeflate(&ext, cur)
		}
	}
	_, accepted = ext.Accepted()
	return accepted, true
}

// offerDeflate hands one offer to wsflate. Its error means parameters it
// cannot accept, which declines that offer only.
func offerDeflate(ext *wsflate.Extension, opt httphead.Option) {
	if opt.Size() > 0 {
		_, _ = ext.Negotiate(opt)
	}
}

// stringBytes views s as bytes without a copy, for httphead's scanners,
// which only read their input (an escaped quoted-string is copied out, never
// unescaped in place). The bytes must not be written.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// extensionsLine is the Sec-WebSocket-Extensions line of a 101 that accepts
// permessage-deflate with params, in httphead's form
// ("permessage-deflate;server_no_context_takeover").
func extensionsLine(params wsflate.Parameters) string {
	var b bytes.Buffer
	b.WriteString("Sec-WebSocket-Extensions: ")
	_, _ = httphead.WriteOptions(&b, []httphead.Option{params.Option()})
	b.WriteString("\r\n")
	return b.String()
}
