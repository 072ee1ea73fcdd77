package engine

import (
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// The addresses of a mounted connection.
//
// gnet keeps, for as long as a connection lives, its local and remote
// net.Addr and the peer's socket address. For a connection it accepted
// itself the local address is its listener's, shared by every connection,
// and the remote one slices its IP out of the socket address: one 48-byte
// object and one 32-byte one, allocated on the loop. For a connection
// handed over with Engine.Register it keeps the hijacked net.Conn's two
// *net.TCPAddr instead, which Go's net package allocated on net/http's
// accepting goroutine (each holding its IP in a 32-byte socket address of
// its own), beside net/http's garbage of the same size classes (contexts,
// its conn, the request's URL): 64 bytes more per connection once trimmed
// (compactAddrs), in heap spans that net/http's garbage leaves partly
// used after a burst.
//
// adoptAddrs gives a mounted connection the native shape, on its loop in
// OnOpen, before the connection is visible to anything but gnet: gnet's
// local address becomes one shared by the server's mounted connections
// (per local address), and its remote address a new one whose IP is that
// of the socket address gnet keeps anyway. The hijacked net.Conn's
// addresses are then garbage. gnet has no setter for them, so the three
// fields are found once by name and type through reflection and written
// through their offsets. gnet reads them only in its LocalAddr, RemoteAddr
// and release (on the loop); release gives an address's IPv6 zone back to
// a pool of gnet's, so a local address with a zone is not shared. Should a
// gnet version rename or retype the fields, adoption is off (the
// addresses stay gnet's, trimmed by compactAddrs) and
// TestMountAdoptsNativeAddrs says so.

// gnetAddrFields are the offsets of gnet's connection's address fields in
// its struct, found once from the first connection the server sees.
type gnetAddrFields struct {
	typ                 reflect.Type
	local, remote, peer uintptr // localAddr, remoteAddr (net.Addr), remote (unix.Sockaddr)
}

var (
	addrFieldsOnce sync.Once
	addrFieldsOK   atomic.Bool // set once the fields were found
	addrFields     gnetAddrFields
)

// findAddrFields looks up, once, the fields of gc's concrete type.
func findAddrFields(gc gnet.Conn) {
	addrFieldsOnce.Do(func() {
		t := reflect.TypeOf(gc)
		if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
			return
		}
		addrT := reflect.TypeFor[net.Addr]()
		f := gnetAddrFields{typ: t}
		for _, want := range []struct {
			name string
			typ  reflect.Type
			off  *uintptr
		}{
			{"localAddr", addrT, &f.local},
			{"remoteAddr", addrT, &f.remote},
			{"remote", reflect.TypeFor[unix.Sockaddr](), &f.peer},
		} {
			sf, ok := t.Elem().FieldByName(want.name)
			if !ok || sf.Type != want.typ || len(sf.Index) != 1 {
				return
			}
			*want.off = sf.Offset
		}
		addrFields = f
		addrFieldsOK.Store(true)
	})
}

// adoptAddrs gives gc, a mounted connection on its loop, a shared local
// address and a remote one built from its socket address, and returns the
// remote address the connection reports. A connection whose addresses are
// not TCP, or a gnet whose fields were not found, keeps its own.
func (m *mountState) adoptAddrs(gc gnet.Conn) net.Addr {
	findAddrFields(gc)
	old, isTCP := gc.RemoteAddr().(*net.TCPAddr)
	if !addrFieldsOK.Load() || reflect.TypeOf(gc) != addrFields.typ || !isTCP || old == nil {
		return gc.RemoteAddr()
	}
	p := reflect.ValueOf(gc).UnsafePointer()
	if la, ok := gc.LocalAddr().(*net.TCPAddr); ok && la != nil && la.Zone == "" {
		*(*net.Addr)(unsafe.Add(p, addrFields.local)) = m.sharedLocal(la)
	}
	var ip net.IP
	switch sa := (*(*unix.Sockaddr)(unsafe.Add(p, addrFields.peer))).(type) {
	case *unix.SockaddrInet4:
		ip = sa.Addr[:]
	case *unix.SockaddrInet6:
		ip = sa.Addr[:]
	}
	if !ip.Equal(old.IP) {
		return old // not the peer's socket address: leave both alone
	}
	ra := &net.TCPAddr{IP: ip, Port: old.Port, Zone: old.Zone}
	*(*net.Addr)(unsafe.Add(p, addrFields.remote)) = ra
	return ra
}

// sharedLocal returns the server's shared copy of la, made on the first
// mounted connection to that address (and again whenever connections
// arrive through another local address than the previous one).
func (m *mountState) sharedLocal(la *net.TCPAddr) *net.TCPAddr {
	if p := m.local.Load(); p != nil && p.Port == la.Port && len(p.IP) == len(la.IP) && p.IP.Equal(la.IP) {
		return p
	}
	p := &net.TCPAddr{IP: append(net.IP(nil), la.IP...), Port: la.Port}
	m.local.Store(p)
	return p
}
