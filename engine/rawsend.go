package engine

import (
	"syscall"
	"unsafe"
)

// rawSend writes b to a non-blocking socket with a raw system call
// (sysSend: send(2) on Linux, write(2) elsewhere) and returns the bytes
// written and the errno, if any.
//
// Raw, because a send on a non-blocking socket never blocks, so it needs
// none of the scheduler bookkeeping of syscall.Write: on the broadcast path,
// where a loop makes one system call per subscriber, that bookkeeping is a
// measurable share of the CPU per message.
func rawSend(fd int, b []byte) (int, syscall.Errno) {
	if len(b) == 0 {
		return 0, 0
	}
	n, _, errno := syscall.RawSyscall6(sysSend, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), sendFlags, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), 0
}
