//go:build !linux

package engine

import (
	"syscall"
	"unsafe"
)

// rawSend writes b to a non-blocking socket with a raw system call (see the
// Linux version). Other systems use write(2): Go's runtime ignores SIGPIPE
// on sockets, so a vanished peer returns EPIPE here too.
func rawSend(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
