package engine

import "golang.org/x/sys/unix"

// unreadIn reports whether socket fd holds bytes from the peer that the
// loop has not read yet (SIOCINQ).
func unreadIn(fd int32) bool {
	n, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	return err == nil && n > 0
}
