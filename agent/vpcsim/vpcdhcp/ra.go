package vpcdhcp

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// allNodes is where unsolicited advertisements (and, as many routers do,
// answers to solicitations) go.
var allNodes = netip.MustParseAddr("ff02::1")

// startRA opens a raw ICMPv6 socket on the interface that receives only
// router solicitations, answers each at once and advertises every
// RAInterval (and once at start). Call inside nsutil.Do.
func (s *Server) startRA(ifi *net.Interface) error {
	pc, err := s.openRASocket(ifi)
	if err != nil {
		return err
	}
	msg, err := ndp.MarshalMessage(s.routerAdvertisement(ifi))
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	s.closers = append(s.closers, func() error { close(stop); return nil })
	send := func() {
		cm := &ipv6.ControlMessage{HopLimit: 255, Src: net.IP(s.cfg.RouterLinkLocal.AsSlice()), IfIndex: ifi.Index}
		dst := &net.IPAddr{IP: net.IP(allNodes.AsSlice()), Zone: strconv.Itoa(ifi.Index)} // numeric: see handleV6
		if _, err := pc.WriteTo(msg, cm, dst); err != nil {
			s.cfg.Logf("vpcdhcp %s: router advertisement: %v", s.cfg.Interface, err)
			return
		}
		s.count(func(st *Stats) { st.RouterAdvertisements++ })
	}
	s.goServe(func() {
		buf := make([]byte, 1500)
		for {
			n, _, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if m, err := icmp.ParseMessage(58, buf[:n]); err == nil && m.Type == ipv6.ICMPTypeRouterSolicitation {
				send()
			}
		}
	})
	s.goServe(func() {
		t := time.NewTicker(s.cfg.RAInterval)
		defer t.Stop()
		send()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				send()
			}
		}
	})
	return nil
}

// openRASocket opens startRA's raw ICMPv6 socket: bound to ifi, receiving
// only router solicitations, sending with hop limit 255. Server.Close
// closes it.
func (s *Server) openRASocket(ifi *net.Interface) (*ipv6.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.BindToDevice(int(fd), ifi.Name)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := lc.ListenPacket(context.Background(), "ip6:ipv6-icmp", "::")
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, c.Close)
	pc := ipv6.NewPacketConn(c)
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := pc.SetICMPFilter(&f); err != nil {
		return nil, err
	}
	if err := pc.SetMulticastHopLimit(255); err != nil {
		return nil, err
	}
	if err := pc.SetHopLimit(255); err != nil {
		return nil, err
	}
	return pc, nil
}

// routerAdvertisement is what the VPC router sends: managed (addresses
// by DHCPv6), no other-config flag, the subnet /64 on-link but not for
// autonomous configuration, the router's MAC.
func (s *Server) routerAdvertisement(ifi *net.Interface) *ndp.RouterAdvertisement {
	p := s.cfg.IPv6Prefix.Masked()
	return &ndp.RouterAdvertisement{
		CurrentHopLimit:      64,
		ManagedConfiguration: true,
		RouterLifetime:       s.cfg.RouterLifetime,
		Options: []ndp.Option{
			&ndp.PrefixInformation{
				PrefixLength:      uint8(p.Bits()),
				OnLink:            true,
				ValidLifetime:     24 * time.Hour,
				PreferredLifetime: 4 * time.Hour,
				Prefix:            p.Addr(),
			},
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr},
		},
	}
}
