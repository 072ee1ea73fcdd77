//go:build !linux

package engine

import "syscall"

// write(2), whose extra arguments are ignored. Go's runtime ignores SIGPIPE
// on sockets, so a vanished peer returns EPIPE here too.
const (
	sysSend   = syscall.SYS_WRITE
	sendFlags = 0
)
