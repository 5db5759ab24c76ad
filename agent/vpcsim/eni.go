package vpcsim

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// ENISpec describes one ENI to launch, attach or announce.
type ENISpec struct {
	Name   string // link name in the instance (eth0, eth1, ...)
	MAC    string // aa:bb:cc:dd:ee:ff
	ID     string // eni-...
	Device int    // device-number
	Card   *int   // network-card; nil = key absent
	// The ENI's subnet; it must have been added with AddSubnet (matched by
	// whichever of the two is valid).
	SubnetIPv4, SubnetIPv6 netip.Prefix
	IPv4                   []netip.Addr // IPv4[0] is the ENI's primary address
	IPv6                   []netip.Addr
	IPv4Prefixes           []netip.Prefix
	IPv6Prefixes           []netip.Prefix
}

// eni is the simulator's record of one ENI: its current assignments and
// where it is plugged in.
type eni struct {
	ENISpec
	inst    *Instance // the instance it is attached to
	hw      net.HardwareAddr
	port    string // router end of the veth, a port of sub's bridge
	sub     *subnet
	linked  bool // the veth exists
	inIMDS  bool // announced to the fake IMDS
	primary bool
}

// validateLocked checks a spec and returns the record for it.
func (v *VPC) validateLocked(s ENISpec) (*eni, error) {
	if v.closed {
		return nil, errors.New("vpcsim: closed")
	}
	hw, err := v.checkMACLocked(s.MAC)
	if err != nil {
		return nil, err
	}
	s.MAC = hw.String()
	if s.Name == "" || len(s.Name) > 15 || strings.ContainsAny(s.Name, "/ ") {
		return nil, fmt.Errorf("vpcsim: ENI %s: link name %q must be 1-15 characters", s.MAC, s.Name)
	}
	sub, err := v.findSubnetLocked(s)
	if err != nil {
		return nil, err
	}
	if err := checkInSubnet(s, sub); err != nil {
		return nil, err
	}
	// Own copies: the caller may reuse its slices.
	s.IPv4 = slices.Clone(s.IPv4)
	s.IPv6 = slices.Clone(s.IPv6)
	s.IPv4Prefixes = maskAll(s.IPv4Prefixes)
	s.IPv6Prefixes = maskAll(s.IPv6Prefixes)
	if s.Card != nil {
		c := *s.Card
		s.Card = &c
	}
	return &eni{ENISpec: s, hw: hw, sub: sub}, nil
}

// checkMACLocked parses an ENI's MAC and checks that it is a unicast MAC
// no attached ENI and no subnet gateway has.
func (v *VPC) checkMACLocked(mac string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("vpcsim: ENI MAC %q: not a MAC address", mac)
	}
	mac = hw.String()
	if _, dup := v.enis[mac]; dup {
		return nil, fmt.Errorf("vpcsim: ENI %s is already attached", mac)
	}
	if hw[0]&1 != 0 {
		return nil, fmt.Errorf("vpcsim: ENI MAC %s is a multicast address", mac)
	}
	for _, sub := range v.subnets {
		if sub.mac.String() == mac {
			return nil, fmt.Errorf("vpcsim: ENI MAC %s is the gateway MAC of %s", mac, sub)
		}
	}
	return hw, nil
}

// checkInSubnet checks that the spec's addresses are host addresses of
// sub and its prefixes lie inside it.
func checkInSubnet(s ENISpec, sub *subnet) error {
	for _, a := range s.IPv4 {
		if !sub.ipv4.IsValid() || !sub.ipv4.Contains(a) || a == sub.gw4 {
			return fmt.Errorf("vpcsim: ENI %s: %s is not a host address of subnet %s", s.MAC, a, sub)
		}
	}
	for _, a := range s.IPv6 {
		if !sub.ipv6.IsValid() || !sub.ipv6.Contains(a) || a == sub.gw6 {
			return fmt.Errorf("vpcsim: ENI %s: %s is not a host address of subnet %s", s.MAC, a, sub)
		}
	}
	for _, p := range s.IPv4Prefixes {
		if !sub.ipv4.IsValid() || !sub.ipv4.Contains(p.Addr()) || p.Bits() < sub.ipv4.Bits() || !p.Addr().Is4() {
			return fmt.Errorf("vpcsim: ENI %s: prefix %s is not inside subnet %s", s.MAC, p, sub)
		}
	}
	for _, p := range s.IPv6Prefixes {
		if !sub.ipv6.IsValid() || !sub.ipv6.Contains(p.Addr()) || p.Bits() < sub.ipv6.Bits() || p.Addr().Is4() {
			return fmt.Errorf("vpcsim: ENI %s: prefix %s is not inside subnet %s", s.MAC, p, sub)
		}
	}
	if len(s.IPv4Prefixes) > 0 && len(s.IPv4) == 0 {
		return fmt.Errorf("vpcsim: ENI %s: IPv4 prefixes need a primary IPv4 address", s.MAC)
	}
	return nil
}

func maskAll(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	return out
}

// assigned returns the ENI's addresses as set elements.
func (e *eni) assigned() (v4, v6 []netip.Prefix) {
	for _, a := range e.IPv4 {
		v4 = append(v4, hostPrefix(a))
	}
	v4 = append(v4, e.IPv4Prefixes...)
	for _, a := range e.IPv6 {
		v6 = append(v6, hostPrefix(a))
	}
	v6 = append(v6, e.IPv6Prefixes...)
	return v4, v6
}

// linkLocal is the EUI-64 link-local address of the ENI's MAC: the router's
// next hop for delegated IPv6 prefixes.
func (e *eni) linkLocal() netip.Addr {
	var b [16]byte
	b[0], b[1] = 0xfe, 0x80
	b[8] = e.hw[0] ^ 0x02
	b[9], b[10] = e.hw[1], e.hw[2]
	b[11], b[12] = 0xff, 0xfe
	b[13], b[14], b[15] = e.hw[3], e.hw[4], e.hw[5]
	return netip.AddrFrom16(b)
}

func (v *VPC) eniLocked(mac string) (*eni, error) {
	if v.closed {
		return nil, errors.New("vpcsim: closed")
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, fmt.Errorf("vpcsim: %q: not a MAC address", mac)
	}
	e, ok := v.enis[hw.String()]
	if !ok {
		return nil, fmt.Errorf("vpcsim: no ENI %s", hw)
	}
	return e, nil
}
