package vpcsim

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nodadFlag is IFA_F_NODAD.
const nodadFlag = unix.IFA_F_NODAD

// Route protocols a DHCP client and router advertisements leave on EC2.
const (
	protoDHCP = 16
	protoRA   = 9
)

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

// AddSubnet creates a subnet: a bridge in the router holding the IPv4
// gateway (first host of ipv4), and for IPv6 fe80:ec2::1 plus the first
// host of ipv6. Either prefix may be zero for a single-stack subnet.
func (v *VPC) AddSubnet(ipv4, ipv6 netip.Prefix) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return errors.New("vpcsim: closed")
	}
	if !ipv4.IsValid() && !ipv6.IsValid() {
		return errors.New("vpcsim: AddSubnet needs an IPv4 or an IPv6 prefix")
	}
	s := &subnet{bridge: fmt.Sprintf("br%d", len(v.subnets)+1)}
	if ipv4.IsValid() {
		if err := checkPrefix(ipv4); err != nil {
			return err
		}
		if !ipv4.Addr().Is4() || ipv4.Bits() > 28 {
			return fmt.Errorf("vpcsim: subnet %s: need an IPv4 prefix of /28 or wider", ipv4)
		}
		s.ipv4 = ipv4.Masked()
		s.gw4 = s.ipv4.Addr().Next()
	}
	if ipv6.IsValid() {
		if err := checkPrefix(ipv6); err != nil {
			return err
		}
		if ipv6.Addr().Is4() || ipv6.Bits() > 64 {
			return fmt.Errorf("vpcsim: subnet %s: need an IPv6 prefix of /64 or wider", ipv6)
		}
		s.ipv6 = ipv6.Masked()
		s.gw6 = s.ipv6.Addr().Next()
	}
	for _, o := range v.subnets {
		if (s.ipv4.IsValid() && o.ipv4.IsValid() && s.ipv4.Overlaps(o.ipv4)) ||
			(s.ipv6.IsValid() && o.ipv6.IsValid() && s.ipv6.Overlaps(o.ipv6)) {
			return fmt.Errorf("vpcsim: subnet %s overlaps %s", s, o)
		}
	}
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
	if err := linkUp(v.router, s.bridge); err != nil {
		return err
	}
	v.subnets = append(v.subnets, s)
	v.addVPCBlocks(s)
	v.logf("vpcsim: subnet %s on %s (gateway %s)", s, s.bridge, strings.Trim(s.gw4.String()+" "+s.gw6.String(), " "))
	return nil
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

// validateLocked checks a spec and returns the record for it.
func (v *VPC) validateLocked(s ENISpec) (*eni, error) {
	if v.closed {
		return nil, errors.New("vpcsim: closed")
	}
	hw, err := net.ParseMAC(s.MAC)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("vpcsim: ENI MAC %q: not a MAC address", s.MAC)
	}
	s.MAC = hw.String()
	if _, dup := v.enis[s.MAC]; dup {
		return nil, fmt.Errorf("vpcsim: ENI %s is already attached", s.MAC)
	}
	if hw[0]&1 != 0 {
		return nil, fmt.Errorf("vpcsim: ENI MAC %s is a multicast address", s.MAC)
	}
	for _, sub := range v.subnets {
		if sub.mac.String() == s.MAC {
			return nil, fmt.Errorf("vpcsim: ENI MAC %s is the gateway MAC of %s", s.MAC, sub)
		}
	}
	if s.Name == "" || len(s.Name) > 15 || strings.ContainsAny(s.Name, "/ ") {
		return nil, fmt.Errorf("vpcsim: ENI %s: link name %q must be 1-15 characters", s.MAC, s.Name)
	}
	sub, err := v.findSubnetLocked(s)
	if err != nil {
		return nil, err
	}
	for _, a := range s.IPv4 {
		if !sub.ipv4.IsValid() || !sub.ipv4.Contains(a) || a == sub.gw4 {
			return nil, fmt.Errorf("vpcsim: ENI %s: %s is not a host address of subnet %s", s.MAC, a, sub)
		}
	}
	for _, a := range s.IPv6 {
		if !sub.ipv6.IsValid() || !sub.ipv6.Contains(a) || a == sub.gw6 {
			return nil, fmt.Errorf("vpcsim: ENI %s: %s is not a host address of subnet %s", s.MAC, a, sub)
		}
	}
	for _, p := range s.IPv4Prefixes {
		if !sub.ipv4.IsValid() || !sub.ipv4.Contains(p.Addr()) || p.Bits() < sub.ipv4.Bits() || !p.Addr().Is4() {
			return nil, fmt.Errorf("vpcsim: ENI %s: prefix %s is not inside subnet %s", s.MAC, p, sub)
		}
	}
	for _, p := range s.IPv6Prefixes {
		if !sub.ipv6.IsValid() || !sub.ipv6.Contains(p.Addr()) || p.Bits() < sub.ipv6.Bits() || p.Addr().Is4() {
			return nil, fmt.Errorf("vpcsim: ENI %s: prefix %s is not inside subnet %s", s.MAC, p, sub)
		}
	}
	if len(s.IPv4Prefixes) > 0 && len(s.IPv4) == 0 {
		return nil, fmt.Errorf("vpcsim: ENI %s: IPv4 prefixes need a primary IPv4 address", s.MAC)
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

func maskAll(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	return out
}

// LaunchPrimary plugs in the primary ENI and configures it as the VPC's
// DHCP (and router advertisements) would at boot: link up, IPv4[0] with
// the subnet's length, a default route via the gateway in the main table
// (protocol dhcp); with IPv6, IPv6[0]/128 and a default route via
// fe80:ec2::1 (protocol ra). IMDS gets the ENI and the top-level mac.
func (v *VPC) LaunchPrimary(s ENISpec) error { return v.def.LaunchPrimary(s) }

// launchPrimaryLocked plugs in i's primary ENI; configured makes it as
// DHCP would have left it (up, addressed, default routes), else the
// instance's own DHCP client does that (StartDHCP).
func (v *VPC) launchPrimaryLocked(i *Instance, s ENISpec, configured bool) error {
	if i.primary != nil {
		return fmt.Errorf("vpcsim: primary ENI %s of %s already launched", i.primary.MAC, i.Name)
	}
	if s.Name == "" {
		s.Name = "eth0"
	}
	e, err := v.validateLocked(s)
	if err != nil {
		return err
	}
	if len(e.IPv4) == 0 && len(e.IPv6) == 0 {
		return fmt.Errorf("vpcsim: primary ENI %s needs an address", e.MAC)
	}
	e.primary = true
	e.inst = i
	if err := v.plugLocked(e); err != nil {
		return err
	}
	if !configured {
		return v.registerPrimaryLocked(i, e)
	}
	if err := v.configurePrimaryLocked(e); err != nil {
		v.unplugLocked(e)
		return err
	}
	// The instance booted with this link: make it usable before returning,
	// so the first probe does not race the kernel's carrier handling.
	ctx, cancel := context.WithTimeout(context.Background(), linkReadyTimeout)
	defer cancel()
	if err := waitOperUp(ctx, i.nl, e.Name); err != nil {
		v.unplugLocked(e)
		return err
	}
	if err := waitPortForwarding(ctx, v.handles[v.Router], v.router, e.port); err != nil {
		v.unplugLocked(e)
		return err
	}
	return v.registerPrimaryLocked(i, e)
}

func (v *VPC) registerPrimaryLocked(i *Instance, e *eni) error {
	v.enis[e.MAC] = e
	i.primary = e
	i.IMDS.SetPrimaryMAC(e.MAC)
	i.IMDS.AttachENI(v.imdsENILocked(e))
	e.inIMDS = true
	return nil
}

func (v *VPC) configurePrimaryLocked(e *eni) error {
	link, err := e.inst.nl.LinkByName(e.Name)
	if err != nil {
		return fmt.Errorf("vpcsim: primary link %s: %w", e.Name, err)
	}
	if err := e.inst.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("vpcsim: set %s up: %w", e.Name, err)
	}
	idx := link.Attrs().Index
	if len(e.IPv4) > 0 {
		p := netip.PrefixFrom(e.IPv4[0], e.sub.ipv4.Bits())
		if err := e.inst.nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
			return fmt.Errorf("vpcsim: add %s to %s: %w", p, e.Name, err)
		}
		r := &netlink.Route{
			LinkIndex: idx,
			Dst:       ipNet(netip.MustParsePrefix("0.0.0.0/0")),
			Gw:        net.IP(e.sub.gw4.AsSlice()),
			Protocol:  protoDHCP,
		}
		if err := e.inst.nl.RouteAdd(r); err != nil {
			return fmt.Errorf("vpcsim: default route via %s on %s: %w", e.sub.gw4, e.Name, err)
		}
	}
	if e.sub.ipv6.IsValid() && len(e.IPv6) > 0 {
		// The instance booted long ago: duplicate address detection is over.
		p := hostPrefix(e.IPv6[0])
		if err := e.inst.nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(p), Flags: nodadFlag}); err != nil {
			return fmt.Errorf("vpcsim: add %s to %s: %w", p, e.Name, err)
		}
		r := &netlink.Route{
			LinkIndex: idx,
			Dst:       ipNet(netip.MustParsePrefix("::/0")),
			Gw:        net.IP(GatewayLinkLocal.AsSlice()),
			Protocol:  protoRA,
		}
		if err := e.inst.nl.RouteAdd(r); err != nil {
			return fmt.Errorf("vpcsim: IPv6 default route via %s on %s: %w", GatewayLinkLocal, e.Name, err)
		}
	}
	return nil
}

// Attach hot-attaches an ENI as EC2 does: the link appears in the instance
// (one RTM_NEWLINK, down, no addresses) with the router already enforcing
// the ENI's addresses, then IMDS learns about it.
func (v *VPC) Attach(s ENISpec) error { return v.def.Attach(s) }

// AttachLinkOnly is Attach without telling IMDS, for tests of metadata
// that lags behind the kernel; AnnounceIMDS completes it.
func (v *VPC) AttachLinkOnly(s ENISpec) error { return v.def.AttachLinkOnly(s) }

// AnnounceIMDS adds an ENI attached with AttachLinkOnly to its instance's
// IMDS, with its current addresses.
func (v *VPC) AnnounceIMDS(mac string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	e.inst.IMDS.AttachENI(v.imdsENILocked(e))
	e.inIMDS = true
	return nil
}

func (v *VPC) attachLinkLocked(i *Instance, s ENISpec) (*eni, error) {
	e, err := v.validateLocked(s)
	if err != nil {
		return nil, err
	}
	e.inst = i
	if err := v.plugLocked(e); err != nil {
		return nil, err
	}
	v.enis[e.MAC] = e
	return e, nil
}

// plugLocked installs the router's check for e, creates the veth (instance
// end straight into the instance namespace: down, no addresses, the ENI's
// MAC), plugs the router end into the subnet bridge and teaches the router
// where every assigned address lives.
func (v *VPC) plugLocked(e *eni) error {
	e.port = fmt.Sprintf("eni%d", v.nextPort)
	v.nextPort++
	v4, v6 := e.assigned()
	if err := addPortCheck(v.handles[v.Router], e.port, e.inst.mark(), v4, v6); err != nil {
		return fmt.Errorf("vpcsim: source/destination check for %s: %w", e.MAC, err)
	}
	fail := func(err error) error {
		v.unplugLocked(e)
		return err
	}
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: e.port, Index: routerIndexBase + v.nextPort - 1},
		PeerName:         e.Name,
		PeerHardwareAddr: e.hw,
		PeerNamespace:    netlink.NsFd(int(e.inst.ns)),
	}
	if err := v.router.LinkAdd(veth); err != nil {
		return fail(fmt.Errorf("vpcsim: create %s (%s) in the instance: %w", e.Name, e.MAC, err))
	}
	e.linked = true
	if err := fastNeighRetrans(e.inst.ns, e.Name); err != nil {
		return fail(err)
	}
	port, err := v.router.LinkByName(e.port)
	if err != nil {
		return fail(err)
	}
	br, err := v.router.LinkByName(e.sub.bridge)
	if err != nil {
		return fail(err)
	}
	if err := v.router.LinkSetMaster(port, br); err != nil {
		return fail(fmt.Errorf("vpcsim: plug %s into %s: %w", e.port, e.sub.bridge, err))
	}
	// The VPC knows which port every MAC is behind: no flooding.
	fdb := &netlink.Neigh{
		LinkIndex:    port.Attrs().Index,
		Family:       unix.AF_BRIDGE,
		HardwareAddr: e.hw,
		State:        netlink.NUD_NOARP,
		Flags:        netlink.NTF_MASTER,
	}
	if err := v.router.NeighAppend(fdb); err != nil {
		return fail(fmt.Errorf("vpcsim: fdb entry for %s: %w", e.MAC, err))
	}
	if err := v.router.LinkSetUp(port); err != nil {
		return fail(fmt.Errorf("vpcsim: set %s up: %w", e.port, err))
	}
	for _, a := range append(slices.Clone(e.IPv4), e.IPv6...) {
		if err := v.addNeighLocked(e, a); err != nil {
			return fail(err)
		}
	}
	for _, p := range append(slices.Clone(e.IPv4Prefixes), e.IPv6Prefixes...) {
		if err := v.addPrefixRouteLocked(e, p); err != nil {
			return fail(err)
		}
	}
	v.logf("vpcsim: plugged %s (%s, %s) of %s into %s via %s", e.Name, e.MAC, e.ID, e.inst.Name, e.sub, e.port)
	return nil
}

// unplugLocked removes everything plugLocked may have created; errors are
// ignored because it also cleans up after a partial plug.
func (v *VPC) unplugLocked(e *eni) {
	if e.linked {
		if l, err := v.router.LinkByName(e.port); err == nil {
			_ = v.router.LinkDel(l)
		}
		e.linked = false
	}
	for _, a := range append(slices.Clone(e.IPv4), e.IPv6...) {
		v.delNeighLocked(e, a)
	}
	for _, p := range append(slices.Clone(e.IPv4Prefixes), e.IPv6Prefixes...) {
		v.delPrefixRouteLocked(e, p)
	}
	if len(e.IPv6Prefixes) > 0 {
		v.delNeighLocked(e, e.linkLocal())
	}
	_ = deletePortCheck(v.handles[v.Router], e.port)
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

func (v *VPC) bridgeIndexLocked(e *eni) (int, error) {
	br, err := v.router.LinkByName(e.sub.bridge)
	if err != nil {
		return 0, fmt.Errorf("vpcsim: bridge %s: %w", e.sub.bridge, err)
	}
	return br.Attrs().Index, nil
}

// addNeighLocked tells the router that a lives behind e's MAC, permanently:
// the router never asks (so the instance cannot answer ARP for another
// ENI's address on the wrong link, as the VPC never lets it).
func (v *VPC) addNeighLocked(e *eni, a netip.Addr) error {
	idx, err := v.bridgeIndexLocked(e)
	if err != nil {
		return err
	}
	fam := unix.AF_INET
	if a.Is6() {
		fam = unix.AF_INET6
	}
	n := &netlink.Neigh{LinkIndex: idx, Family: fam, State: netlink.NUD_PERMANENT, IP: net.IP(a.AsSlice()), HardwareAddr: e.hw}
	if err := v.router.NeighSet(n); err != nil {
		return fmt.Errorf("vpcsim: router neighbour %s -> %s: %w", a, e.MAC, err)
	}
	return nil
}

func (v *VPC) delNeighLocked(e *eni, a netip.Addr) {
	idx, err := v.bridgeIndexLocked(e)
	if err != nil {
		return
	}
	fam := unix.AF_INET
	if a.Is6() {
		fam = unix.AF_INET6
	}
	_ = v.router.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: fam, IP: net.IP(a.AsSlice())})
}

// addPrefixRouteLocked routes a delegated prefix to the ENI, as the VPC
// does: via the ENI's primary IPv4 address, or for IPv6 via the link-local
// address of its MAC (with a permanent neighbour entry for it).
func (v *VPC) addPrefixRouteLocked(e *eni, p netip.Prefix) error {
	idx, err := v.bridgeIndexLocked(e)
	if err != nil {
		return err
	}
	var gw netip.Addr
	if p.Addr().Is4() {
		if len(e.IPv4) == 0 {
			return fmt.Errorf("vpcsim: ENI %s: IPv4 prefix %s needs a primary IPv4 address", e.MAC, p)
		}
		gw = e.IPv4[0]
	} else {
		gw = e.linkLocal()
		if err := v.addNeighLocked(e, gw); err != nil {
			return err
		}
	}
	r := &netlink.Route{LinkIndex: idx, Dst: ipNet(p), Gw: net.IP(gw.AsSlice())}
	if err := v.router.RouteReplace(r); err != nil {
		return fmt.Errorf("vpcsim: router route %s via %s: %w", p, gw, err)
	}
	return nil
}

func (v *VPC) delPrefixRouteLocked(e *eni, p netip.Prefix) {
	idx, err := v.bridgeIndexLocked(e)
	if err != nil {
		return
	}
	_ = v.router.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipNet(p)})
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

// Detach removes an ENI: its veth (the instance sees RTM_DELLINK), the
// router's check entries, neighbours and routes for it, and its IMDS entry.
func (v *VPC) Detach(mac string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	if e.primary {
		return fmt.Errorf("vpcsim: %s is the primary ENI; EC2 cannot detach it", e.MAC)
	}
	if e.linked {
		l, err := v.router.LinkByName(e.port)
		if err != nil {
			return fmt.Errorf("vpcsim: detach %s: %w", e.MAC, err)
		}
		if err := v.router.LinkDel(l); err != nil {
			return fmt.Errorf("vpcsim: detach %s: %w", e.MAC, err)
		}
		e.linked = false
	}
	v.unplugLocked(e)
	if e.inIMDS {
		e.inst.IMDS.DetachENI(e.MAC)
	}
	delete(v.enis, e.MAC)
	v.logf("vpcsim: detached %s (%s)", e.Name, e.MAC)
	return nil
}
