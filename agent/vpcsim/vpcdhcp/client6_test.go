package vpcdhcp_test

import (
	"context"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"golang.org/x/sys/unix"
)

// listenClient6 opens a DHCPv6 client socket ([::]:546 on one link) in
// the calling thread's namespace.
func listenClient6(ctx context.Context, link string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.BindToDevice(int(fd), link) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp6", "[::]:546")
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// exchange6 sends m to All_DHCP_Relay_Agents_and_Servers on the link and
// returns the first answer of type want with m's transaction id, retrying
// the send every second (the first may precede the link's readiness).
func exchange6(t *testing.T, conn *net.UDPConn, ifindex int, m *dhcpv6.Message, want dhcpv6.MessageType) *dhcpv6.Message {
	t.Helper()
	// A numeric zone: a name is resolved in the caller's namespace.
	dst := &net.UDPAddr{IP: dhcpv6.AllDHCPRelayAgentsAndServers, Port: dhcpv6.DefaultServerPort, Zone: strconv.Itoa(ifindex)}
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 4096)
	for time.Now().Before(deadline) {
		// Until IPv6 on the fresh link is up the send fails
		// (ENETUNREACH): try again.
		if _, err := conn.WriteTo(m.ToBytes(), dst); err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				break // timeout: send again
			}
			d, err := dhcpv6.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			r, ok := d.(*dhcpv6.Message)
			if ok && r.Type() == want && r.TransactionID == m.TransactionID {
				return r
			}
		}
	}
	t.Fatalf("no %s for %s within 10 s", want, m.Type())
	return nil
}
