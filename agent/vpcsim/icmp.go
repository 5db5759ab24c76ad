package vpcsim

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// echoICMP sends one ICMP echo request from src to dst inside namespace h
// and waits for the matching reply, as `ping -c 1 -I src dst` does. The
// raw socket is bound to src, so the kernel sends with that source (and
// policy routing sees it) and delivers only replies addressed to it. New
// namespaces disable unprivileged ping sockets (ping_group_range "1 0"),
// so a raw socket it is; the simulator runs as root anyway.
func echoICMP(ctx context.Context, h netns.NsHandle, src, dst netip.Addr) error {
	network, proto := "ip4:icmp", 1
	var typ, reply icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if src.Is6() {
		network, proto = "ip6:ipv6-icmp", 58
		typ, reply = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var conn net.PacketConn
	err := nsutil.Do(h, func() error {
		var err error
		conn, err = net.ListenPacket(network, src.String())
		return err
	})
	if err != nil {
		return err
	}
	defer conn.Close()
	// A random identifier and payload tell our reply from any other
	// probe's: every raw socket sees every ICMP packet for its address.
	token := make([]byte, 16)
	if _, err := rand.Read(token); err != nil {
		return err
	}
	id := int(binary.BigEndian.Uint16(token))
	// The kernel fills in the ICMPv6 checksum of a raw ICMPv6 socket.
	req, err := (&icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: 1, Data: token}}).Marshal(nil)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	} else {
		_ = conn.SetDeadline(time.Now().Add(ProbeTimeout))
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.WriteTo(req, &net.IPAddr{IP: net.IP(dst.AsSlice())}); err != nil {
		return err
	}
	return awaitEchoReply(conn, proto, reply, dst, id, token)
}

// awaitEchoReply reads conn until the echo reply of type reply from dst
// carrying id and token arrives, or conn's deadline passes.
func awaitEchoReply(conn net.PacketConn, proto int, reply icmp.Type, dst netip.Addr, id int, token []byte) error {
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return errors.New("no echo reply: dropped")
			}
			return err
		}
		if pa, ok := peer.(*net.IPAddr); !ok || !pa.IP.Equal(net.IP(dst.AsSlice())) {
			continue
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil || m.Type != reply {
			continue
		}
		if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id && bytes.Equal(e.Data, token) {
			return nil
		}
	}
}
