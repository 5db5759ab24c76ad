package vpcdhcp

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/dhcpv6/server6"
	"github.com/insomniacslk/dhcp/iana"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// startV6 receives DHCPv6 client messages through a packet socket (it
// alone tells the sender's MAC) and answers through a UDP socket bound to
// [::]:547 on the interface, which also joins ff02::1:2 so the kernel
// accepts the multicast. Call inside nsutil.Do.
func (s *Server) startV6(ifi *net.Interface) error {
	udp, err := server6.NewIPv6UDPConn(s.cfg.Interface, &net.UDPAddr{IP: net.IPv6unspecified, Port: dhcpv6.DefaultServerPort})
	if err != nil {
		return err
	}
	s.closers = append(s.closers, udp.Close)
	group := &net.UDPAddr{IP: dhcpv6.AllDHCPRelayAgentsAndServers}
	if err := ipv6.NewPacketConn(udp).JoinGroup(ifi, group); err != nil {
		return err
	}
	// The UDP socket's own copy of each request is not needed: drain it.
	s.goServe(func() {
		buf := make([]byte, 2048)
		for {
			if _, _, err := udp.ReadFrom(buf); err != nil {
				return
			}
		}
	})
	pkt, err := openDHCPv6PacketSocket(ifi.Index)
	if err != nil {
		return err
	}
	s.closers = append(s.closers, pkt.Close)
	duid := &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: ifi.HardwareAddr}
	s.goServe(func() { s.serveV6(pkt, udp, duid, ifi.Index) })
	return nil
}

// dhcpv6Filter passes IPv6 packets whose next header is UDP and whose
// destination port is 547 (offsets from the IPv6 header: a SOCK_DGRAM
// packet socket strips the Ethernet header). Client messages carry no
// extension headers.
var dhcpv6Filter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 6},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: unix.IPPROTO_UDP},
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 42},
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: dhcpv6.DefaultServerPort},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openDHCPv6PacketSocket opens a non-blocking AF_PACKET socket on one
// interface with the filter attached before it is bound, so nothing
// unfiltered is ever queued.
func openDHCPv6PacketSocket(ifindex int) (*os.File, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	prog := unix.SockFprog{Len: uint16(len(dhcpv6Filter)), Filter: &dhcpv6Filter[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
		unix.Close(fd)
		return nil, err
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IPV6), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "dhcpv6-packet"), nil
}

// v6Request is one client message with where it came from.
type v6Request struct {
	mac  net.HardwareAddr
	src  netip.Addr
	port int
	msg  *dhcpv6.Message
}

func (s *Server) serveV6(pkt *os.File, udp *net.UDPConn, duid dhcpv6.DUID, ifindex int) {
	rc, err := pkt.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 4096)
	for {
		var (
			n    int
			from unix.Sockaddr
			rerr error
		)
		err := rc.Read(func(fd uintptr) bool {
			n, from, rerr = unix.Recvfrom(int(fd), buf, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		})
		if err != nil {
			return // closed
		}
		if rerr != nil {
			continue
		}
		req, ok := parseV6(buf[:n], from)
		if !ok {
			continue
		}
		s.handleV6(udp, duid, ifindex, req)
	}
}

// parseV6 takes the IPv6 and UDP headers off a packet from the packet
// socket.
func parseV6(b []byte, from unix.Sockaddr) (v6Request, bool) {
	ll, ok := from.(*unix.SockaddrLinklayer)
	if !ok || ll.Halen != 6 || len(b) < 48 || b[6] != unix.IPPROTO_UDP {
		return v6Request{}, false
	}
	src := netip.AddrFrom16([16]byte(b[8:24]))
	udpLen := int(binary.BigEndian.Uint16(b[44:46]))
	if udpLen < 8 || 40+udpLen > len(b) {
		return v6Request{}, false
	}
	m, err := dhcpv6.FromBytes(b[48 : 40+udpLen])
	if err != nil {
		return v6Request{}, false
	}
	msg, ok := m.(*dhcpv6.Message)
	if !ok {
		return v6Request{}, false // relayed: no relays in the VPC
	}
	return v6Request{
		mac:  net.HardwareAddr(append([]byte(nil), ll.Addr[:6]...)),
		src:  src,
		port: int(binary.BigEndian.Uint16(b[40:42])),
		msg:  msg,
	}, true
}

// handleV6 answers Solicit with Advertise and Request, Renew, Rebind,
// Confirm, Release, Decline and Information-request with Reply.
func (s *Server) handleV6(udp *net.UDPConn, duid dhcpv6.DUID, ifindex int, r v6Request) {
	t := r.msg.Type()
	switch t {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeRenew,
		dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeConfirm, dhcpv6.MessageTypeRelease,
		dhcpv6.MessageTypeDecline, dhcpv6.MessageTypeInformationRequest:
	default:
		return
	}
	// Messages meant for another server (Request, Renew, Release,
	// Decline carry the chosen server's DUID).
	if sid := r.msg.Options.ServerID(); sid != nil && !sid.Equal(duid) {
		return
	}
	l, ok := s.lease(r.mac)
	if !ok || (len(l.IPv6) == 0 && t != dhcpv6.MessageTypeInformationRequest) {
		return
	}
	mods := []dhcpv6.Modifier{dhcpv6.WithServerID(duid)}
	if ia := r.msg.Options.OneIANA(); ia != nil && len(l.IPv6) > 0 &&
		t != dhcpv6.MessageTypeRelease && t != dhcpv6.MessageTypeDecline && t != dhcpv6.MessageTypeConfirm {
		mods = append(mods, dhcpv6.WithOption(s.iana(ia.IaId, l.IPv6)))
	}
	if t == dhcpv6.MessageTypeConfirm || t == dhcpv6.MessageTypeRelease || t == dhcpv6.MessageTypeDecline {
		mods = append(mods, dhcpv6.WithOption(&dhcpv6.OptStatusCode{StatusCode: iana.StatusSuccess}))
	}
	var (
		resp *dhcpv6.Message
		err  error
	)
	if t == dhcpv6.MessageTypeSolicit {
		resp, err = dhcpv6.NewAdvertiseFromSolicit(r.msg, mods...)
	} else {
		resp, err = dhcpv6.NewReplyFromMessage(r.msg, mods...)
	}
	if err != nil {
		s.cfg.Logf("vpcdhcp %s: DHCPv6 answer to %s %s: %v", s.cfg.Interface, t, r.mac, err)
		return
	}
	// A numeric zone: a name would be looked up in the namespace of
	// whatever thread runs this, not the interface's.
	dst := &net.UDPAddr{IP: net.IP(r.src.AsSlice()), Port: r.port, Zone: strconv.Itoa(ifindex)}
	if _, err := udp.WriteTo(resp.ToBytes(), dst); err != nil {
		s.cfg.Logf("vpcdhcp %s: send DHCPv6 %s to %s: %v", s.cfg.Interface, resp.Type(), dst, err)
		return
	}
	s.count(func(st *Stats) {
		if resp.Type() == dhcpv6.MessageTypeAdvertise {
			st.Advertises++
		} else {
			st.Replies++
		}
		st.LastV6Reply = r.mac.String() + " " + t.String()
	})
	s.cfg.Logf("vpcdhcp %s: DHCPv6 %s for %s %v -> %s", s.cfg.Interface, resp.Type(), t, l.IPv6, r.mac)
}

func (s *Server) iana(iaid [4]byte, addrs []netip.Addr) *dhcpv6.OptIANA {
	ia := &dhcpv6.OptIANA{IaId: iaid, T1: s.cfg.T1, T2: s.cfg.T2}
	for _, a := range addrs {
		ia.Options.Add(&dhcpv6.OptIAAddress{
			IPv6Addr:          net.IP(a.AsSlice()),
			PreferredLifetime: s.cfg.Preferred,
			ValidLifetime:     s.cfg.Valid,
		})
	}
	return ia
}
