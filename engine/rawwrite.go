package engine

import (
	"syscall"
	"unsafe"
)

// rawWrite writes b to a non-blocking socket with a raw system call. A write
// to a non-blocking socket never blocks, so it needs none of the scheduler
// bookkeeping of syscall.Write; on the broadcast path, where a loop makes
// one write per subscriber, that bookkeeping is a measurable share of the
// CPU per message. It returns the bytes written and the errno, if any.
func rawWrite(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
