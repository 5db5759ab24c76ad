package nsutil

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// FreeBind is a net.ListenConfig or net.Dialer Control that lets a socket
// bind an address its namespace does not have (yet): a listener started
// before the address is configured, or a source that is the host's only
// through a route.
func FreeBind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "tcp6" || network == "udp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
		} else {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
