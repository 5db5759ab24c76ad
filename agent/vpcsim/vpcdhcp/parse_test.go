package vpcdhcp

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"golang.org/x/sys/unix"
)

// packetV6 wraps a DHCPv6 payload in the IPv6 and UDP headers a packet
// socket delivers (checksums are not checked by parseV6).
func packetV6(payload []byte) []byte {
	b := make([]byte, 48+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(8+len(payload)))
	b[6] = unix.IPPROTO_UDP
	b[7] = 1
	copy(b[8:24], net.ParseIP("fe80::ec:20ff:fe00:700"))
	copy(b[24:40], dhcpv6.AllDHCPRelayAgentsAndServers)
	binary.BigEndian.PutUint16(b[40:42], 546)
	binary.BigEndian.PutUint16(b[42:44], 547)
	binary.BigEndian.PutUint16(b[44:46], uint16(8+len(payload)))
	copy(b[48:], payload)
	return b
}

var fromENI = &unix.SockaddrLinklayer{Halen: 6, Addr: [8]byte{0x02, 0xec, 0x20, 0, 7, 0}}

func TestParseV6(t *testing.T) {
	mac, _ := net.ParseMAC("02:ec:20:00:07:00")
	sol, err := dhcpv6.NewSolicit(mac)
	if err != nil {
		t.Fatal(err)
	}
	r, ok := parseV6(packetV6(sol.ToBytes()), fromENI)
	if !ok || r.mac.String() != mac.String() || r.port != 546 || r.src.String() != "fe80::ec:20ff:fe00:700" || r.msg.Type() != dhcpv6.MessageTypeSolicit {
		t.Fatalf("parseV6 = %+v, %v", r, ok)
	}
	// A UDP length beyond the packet, a non-UDP next header, a short
	// packet and a relayed message are refused.
	bad := packetV6(sol.ToBytes())
	binary.BigEndian.PutUint16(bad[44:46], 4000)
	notUDP := packetV6(sol.ToBytes())
	notUDP[6] = unix.IPPROTO_TCP
	relay, _ := dhcpv6.EncapsulateRelay(sol, dhcpv6.MessageTypeRelayForward, net.IPv6loopback, net.IPv6loopback)
	for name, b := range map[string][]byte{"udp length": bad, "not udp": notUDP, "short": bad[:40], "relayed": packetV6(relay.ToBytes())} {
		if _, ok := parseV6(b, fromENI); ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzParseV6: whatever an instance sends, parsing never panics, and
// what it accepts is a client message with the sender's MAC.
func FuzzParseV6(f *testing.F) {
	mac, _ := net.ParseMAC("02:ec:20:00:07:00")
	sol, _ := dhcpv6.NewSolicit(mac)
	f.Add(packetV6(sol.ToBytes()))
	req, _ := dhcpv6.NewMessage(dhcpv6.WithIANA())
	f.Add(packetV6(req.ToBytes()))
	f.Add(packetV6(nil))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := parseV6(b, fromENI)
		if ok && (r.msg == nil || r.mac.String() != mac.String()) {
			t.Fatalf("accepted %x as %+v", b, r)
		}
	})
}
