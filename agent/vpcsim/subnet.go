package vpcsim

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// Subnets: a bridge per subnet in the router holding its gateways, and
// the checks that keep every address inside the test ranges.

// Address ranges the simulator accepts: nothing it creates may collide
// with a real network of the machine running the tests.
var (
	allowedIPv4 = netip.MustParsePrefix("100.64.0.0/10")
	allowedIPv6 = netip.MustParsePrefix("2001:db8::/32")
)

// subnet is one VPC subnet: a bridge in the router holding the gateways.
type subnet struct {
	ipv4, ipv6 netip.Prefix // either may be zero (single-stack)
	bridge     string
	gw4, gw6   netip.Addr
	mac        net.HardwareAddr // the gateway's (the bridge's) MAC
}

func (s *subnet) String() string {
	var parts []string
	for _, p := range []netip.Prefix{s.ipv4, s.ipv6} {
		if p.IsValid() {
			parts = append(parts, p.String())
		}
	}
	return strings.Join(parts, "+")
}

// AddSubnet creates a subnet: a bridge in the router holding the IPv4
// gateway (first host of ipv4), and for IPv6 fe80:ec2::1 plus the first
// host of ipv6. Either prefix may be zero for a single-stack subnet.
func (v *VPC) AddSubnet(ipv4, ipv6 netip.Prefix) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return errors.New("vpcsim: closed")
	}
	s, err := v.newSubnetLocked(ipv4, ipv6)
	if err != nil {
		return err
	}
	if err := v.addBridgeLocked(s); err != nil {
		return err
	}
	v.subnets = append(v.subnets, s)
	v.addVPCBlocks(s)
	v.logf("vpcsim: subnet %s on %s (gateway %s)", s, s.bridge, strings.Trim(s.gw4.String()+" "+s.gw6.String(), " "))
	return nil
}

// newSubnetLocked checks the prefixes (test ranges, sizes, no overlap with
// another subnet) and returns the subnet's record with its gateways; its
// bridge does not exist yet.
func (v *VPC) newSubnetLocked(ipv4, ipv6 netip.Prefix) (*subnet, error) {
	if !ipv4.IsValid() && !ipv6.IsValid() {
		return nil, errors.New("vpcsim: AddSubnet needs an IPv4 or an IPv6 prefix")
	}
	s := &subnet{bridge: fmt.Sprintf("br%d", len(v.subnets)+1)}
	if ipv4.IsValid() {
		if err := checkPrefix(ipv4); err != nil {
			return nil, err
		}
		if !ipv4.Addr().Is4() || ipv4.Bits() > 28 {
			return nil, fmt.Errorf("vpcsim: subnet %s: need an IPv4 prefix of /28 or wider", ipv4)
		}
		s.ipv4 = ipv4.Masked()
		s.gw4 = s.ipv4.Addr().Next()
	}
	if ipv6.IsValid() {
		if err := checkPrefix(ipv6); err != nil {
			return nil, err
		}
		if ipv6.Addr().Is4() || ipv6.Bits() > 64 {
			return nil, fmt.Errorf("vpcsim: subnet %s: need an IPv6 prefix of /64 or wider", ipv6)
		}
		s.ipv6 = ipv6.Masked()
		s.gw6 = s.ipv6.Addr().Next()
	}
	for _, o := range v.subnets {
		if (s.ipv4.IsValid() && o.ipv4.IsValid() && s.ipv4.Overlaps(o.ipv4)) ||
			(s.ipv6.IsValid() && o.ipv6.IsValid() && s.ipv6.Overlaps(o.ipv6)) {
			return nil, fmt.Errorf("vpcsim: subnet %s overlaps %s", s, o)
		}
	}
	return s, nil
}

// addBridgeLocked creates s's bridge in the router with the gateway
// addresses (and fe80:ec2::1 for IPv6) and sets it up.
func (v *VPC) addBridgeLocked(s *subnet) error {
	off := false
	// A set gateway MAC: a bridge without one takes its lowest port's MAC,
	// so plugging in an ENI could change it under the instance's neighbour
	// cache. Random (locally administered, unicast), so that it cannot
	// equal an ENI MAC a test picked.
	gwMAC := make(net.HardwareAddr, 6)
	if _, err := rand.Read(gwMAC); err != nil {
		return err
	}
	gwMAC[0] = gwMAC[0]&0xfc | 0x02
	s.mac = gwMAC
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: s.bridge, HardwareAddr: gwMAC}, MulticastSnooping: &off}
	if err := v.router.LinkAdd(br); err != nil {
		return fmt.Errorf("vpcsim: create bridge %s for %s: %w", s.bridge, s, err)
	}
	var addrs []netip.Prefix
	if s.ipv4.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(s.gw4, s.ipv4.Bits()))
	}
	if s.ipv6.IsValid() {
		addrs = append(addrs, netip.PrefixFrom(s.gw6, s.ipv6.Bits()), netip.PrefixFrom(GatewayLinkLocal, 64))
	}
	if err := fastNeighRetrans(v.handles[v.Router], s.bridge); err != nil {
		return err
	}
	if err := addAddrs(v.router, s.bridge, addrs...); err != nil {
		return err
	}
	return linkUp(v.router, s.bridge)
}

// addVPCBlocks makes sure the VPC's CIDR blocks (what IMDS reports as
// vpc-ipv4-cidr-blocks / vpc-ipv6-cidr-blocks) cover the subnet: the /16
// (IPv4) or /56 (IPv6) around it is added as another block when needed,
// as a VPC with several CIDR blocks has.
func (v *VPC) addVPCBlocks(s *subnet) {
	cover := func(blocks []netip.Prefix, p netip.Prefix, bits int) []netip.Prefix {
		for _, b := range blocks {
			if b.Contains(p.Addr()) && b.Bits() <= p.Bits() {
				return blocks
			}
		}
		if p.Bits() < bits {
			bits = p.Bits()
		}
		blk, _ := p.Addr().Prefix(bits)
		return append(blocks, blk)
	}
	if s.ipv4.IsValid() {
		v.vpcIPv4 = cover(v.vpcIPv4, s.ipv4, 16)
	}
	if s.ipv6.IsValid() {
		v.vpcIPv6 = cover(v.vpcIPv6, s.ipv6, 56)
	}
}

func checkPrefix(p netip.Prefix) error {
	return checkAddr(p.Addr())
}

func checkAddr(a netip.Addr) error {
	if (a.Is4() && allowedIPv4.Contains(a)) || (a.Is6() && allowedIPv6.Contains(a)) {
		return nil
	}
	return fmt.Errorf("vpcsim: %s is outside the test ranges %s and %s", a, allowedIPv4, allowedIPv6)
}

// findSubnetLocked returns the subnet matching the spec's IPv4 or IPv6.
func (v *VPC) findSubnetLocked(s ENISpec) (*subnet, error) {
	for _, sub := range v.subnets {
		if (s.SubnetIPv4.IsValid() && sub.ipv4 == s.SubnetIPv4.Masked()) ||
			(s.SubnetIPv6.IsValid() && sub.ipv6 == s.SubnetIPv6.Masked()) {
			return sub, nil
		}
	}
	return nil, fmt.Errorf("vpcsim: ENI %s: no subnet %s / %s (call AddSubnet first)", s.MAC, s.SubnetIPv4, s.SubnetIPv6)
}
