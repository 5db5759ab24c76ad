package vpcdhcp

import (
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
)

// startV4 listens on 0.0.0.0:67 bound to the interface (the socket is
// created in the calling thread's namespace: call inside nsutil.Do).
func (s *Server) startV4() error {
	conn, err := server4.NewIPv4UDPConn(s.cfg.Interface, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		return err
	}
	srv, err := server4.NewServer(s.cfg.Interface, nil, s.handleV4, server4.WithConn(conn))
	if err != nil {
		conn.Close()
		return err
	}
	s.closers = append(s.closers, srv.Close)
	s.goServe(func() { _ = srv.Serve() })
	return nil
}

// handleV4 answers DISCOVER with OFFER, REQUEST with ACK (or NAK for an
// address that is not the MAC's), INFORM with ACK; RELEASE and DECLINE
// need no answer. Replies go to the client's address when it has one
// (renewal), else broadcast (the library's server sets peer so).
func (s *Server) handleV4(conn net.PacketConn, peer net.Addr, m *dhcpv4.DHCPv4) {
	if m.OpCode != dhcpv4.OpcodeBootRequest {
		return
	}
	var reply dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		reply = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		reply = dhcpv4.MessageTypeAck
	default:
		return
	}
	// A REQUEST naming another server is that server's business.
	if sid := m.ServerIdentifier(); sid != nil && !sid.IsUnspecified() && !sid.Equal(net.IP(s.cfg.ServerIPv4.AsSlice())) {
		return
	}
	l, ok := s.lease(m.ClientHWAddr)
	if !ok || !l.IPv4.IsValid() {
		return
	}
	if m.MessageType() == dhcpv4.MessageTypeRequest {
		want := m.RequestedIPAddress()
		if want == nil || want.IsUnspecified() {
			want = m.ClientIPAddr
		}
		if got, ok := netip.AddrFromSlice(want); ok && got.Unmap() != l.IPv4.Addr() {
			reply = dhcpv4.MessageTypeNak
		}
	}
	resp, err := s.buildV4(m, reply, l)
	if err != nil {
		s.cfg.Logf("vpcdhcp %s: DHCPv4 reply to %s: %v", s.cfg.Interface, m.ClientHWAddr, err)
		return
	}
	if _, err := conn.WriteTo(resp.ToBytes(), peer); err != nil {
		s.cfg.Logf("vpcdhcp %s: send DHCPv4 %s to %s: %v", s.cfg.Interface, reply, peer, err)
		return
	}
	s.count(func(st *Stats) {
		switch reply {
		case dhcpv4.MessageTypeOffer:
			st.Offers++
		case dhcpv4.MessageTypeAck:
			st.Acks++
		default:
			st.Naks++
		}
		st.LastIPv4Client = m.ClientHWAddr.String()
	})
	s.cfg.Logf("vpcdhcp %s: DHCPv4 %s %s -> %s", s.cfg.Interface, reply, l.IPv4, m.ClientHWAddr)
}

func (s *Server) buildV4(m *dhcpv4.DHCPv4, t dhcpv4.MessageType, l Lease) (*dhcpv4.DHCPv4, error) {
	ip := func(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(t),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip(s.cfg.ServerIPv4))),
	}
	if t == dhcpv4.MessageTypeNak {
		return dhcpv4.NewReplyFromRequest(m, mods...)
	}
	if m.MessageType() != dhcpv4.MessageTypeInform {
		mods = append(mods,
			dhcpv4.WithYourIP(ip(l.IPv4.Addr())),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(s.cfg.LeaseTime)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(s.cfg.LeaseTime/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(s.cfg.LeaseTime*7/8)))
	}
	mods = append(mods, dhcpv4.WithNetmask(net.CIDRMask(l.IPv4.Bits(), 32)))
	if l.Router.IsValid() {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptRouter(ip(l.Router))))
	}
	if len(l.DNS) > 0 {
		var dns []net.IP
		for _, d := range l.DNS {
			dns = append(dns, ip(d))
		}
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptDNS(dns...)))
	}
	if l.MTU > 0 {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(l.MTU >> 8), byte(l.MTU)}))
	}
	if l.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(l.Hostname)))
	}
	return dhcpv4.NewReplyFromRequest(m, mods...)
}
