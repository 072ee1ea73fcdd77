package engine

import "golang.org/x/sys/unix"

// peerAcked returns the low 32 bits of the bytes the peer has acknowledged
// on socket fd (TCP_INFO's tcpi_bytes_acked): they grow only while the
// peer's kernel takes data, which it stops doing once the peer stops
// reading and its receive window is full.
func peerAcked(fd int32) (uint32, bool) {
	info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return 0, false
	}
	return uint32(info.Bytes_acked), true
}
