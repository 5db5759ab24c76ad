package vpcsim

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/vishvananda/netlink"
)

// Changes to attached ENIs (addresses, prefixes, link names) and what the
// simulator reports about them.

// AssignIPv4 assigns a secondary private IPv4 address to an ENI: the
// router accepts it from/to the ENI and IMDS lists it.
func (v *VPC) AssignIPv4(mac string, a netip.Addr) error { return v.assign(mac, a, true) }

// UnassignIPv4 takes an IPv4 address away from an ENI.
func (v *VPC) UnassignIPv4(mac string, a netip.Addr) error { return v.assign(mac, a, false) }

// AssignIPv6 assigns an IPv6 address to an ENI.
func (v *VPC) AssignIPv6(mac string, a netip.Addr) error { return v.assign(mac, a, true) }

// UnassignIPv6 takes an IPv6 address away from an ENI.
func (v *VPC) UnassignIPv6(mac string, a netip.Addr) error { return v.assign(mac, a, false) }

func (v *VPC) assign(mac string, a netip.Addr, add bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	a = a.Unmap()
	list := &e.IPv4
	sub := e.sub.ipv4
	if a.Is6() {
		list = &e.IPv6
		sub = e.sub.ipv6
	}
	has := slices.Contains(*list, a)
	if add {
		if has {
			return nil
		}
		if !sub.IsValid() || !sub.Contains(a) {
			return fmt.Errorf("vpcsim: %s is not in %s's subnet %s", a, e.MAC, e.sub)
		}
		for _, o := range v.enis {
			if slices.Contains(o.IPv4, a) || slices.Contains(o.IPv6, a) {
				return fmt.Errorf("vpcsim: %s is already assigned to %s", a, o.MAC)
			}
		}
		*list = append(*list, a)
	} else {
		if !has {
			return fmt.Errorf("vpcsim: %s is not assigned to %s", a, e.MAC)
		}
		if a.Is4() && (*list)[0] == a && len(e.IPv4Prefixes) > 0 {
			return fmt.Errorf("vpcsim: %s is the primary IPv4 address of %s, which has prefixes", a, e.MAC)
		}
		*list = slices.DeleteFunc(*list, func(x netip.Addr) bool { return x == a })
	}
	if e.linked {
		if err := v.syncSetsLocked(e); err != nil {
			return err
		}
		if add {
			if err := v.addNeighLocked(e, a); err != nil {
				return err
			}
		} else {
			v.delNeighLocked(e, a)
		}
	}
	if e.inIMDS {
		e.tellIMDS(a, add)
	}
	return nil
}

// tellIMDS reports to the IMDS of e's instance that a was assigned to e
// (add) or taken away.
func (e *eni) tellIMDS(a netip.Addr, add bool) {
	switch {
	case a.Is4() && add:
		e.inst.IMDS.AssignIPv4(e.MAC, a.String())
	case a.Is4():
		e.inst.IMDS.UnassignIPv4(e.MAC, a.String())
	case add:
		e.inst.IMDS.AssignIPv6(e.MAC, a.String())
	default:
		e.inst.IMDS.UnassignIPv6(e.MAC, a.String())
	}
}

// AssignPrefix delegates an IPv4 (/28) or IPv6 (/80) prefix to an ENI.
func (v *VPC) AssignPrefix(mac string, p netip.Prefix) error { return v.assignPrefix(mac, p, true) }

// UnassignPrefix takes a delegated prefix away.
func (v *VPC) UnassignPrefix(mac string, p netip.Prefix) error {
	return v.assignPrefix(mac, p, false)
}

func (v *VPC) assignPrefix(mac string, p netip.Prefix, add bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	p = p.Masked()
	list := &e.IPv4Prefixes
	sub := e.sub.ipv4
	if p.Addr().Is6() {
		list = &e.IPv6Prefixes
		sub = e.sub.ipv6
	}
	has := slices.Contains(*list, p)
	if add {
		if has {
			return nil
		}
		if !sub.IsValid() || !sub.Contains(p.Addr()) || p.Bits() < sub.Bits() {
			return fmt.Errorf("vpcsim: prefix %s is not inside %s's subnet %s", p, e.MAC, e.sub)
		}
		if p.Addr().Is4() && len(e.IPv4) == 0 {
			return fmt.Errorf("vpcsim: IPv4 prefix %s needs a primary IPv4 address on %s", p, e.MAC)
		}
		*list = append(*list, p)
	} else {
		if !has {
			return fmt.Errorf("vpcsim: prefix %s is not delegated to %s", p, e.MAC)
		}
		*list = slices.DeleteFunc(*list, func(x netip.Prefix) bool { return x == p })
	}
	if e.linked {
		if err := v.syncSetsLocked(e); err != nil {
			return err
		}
		if add {
			if err := v.addPrefixRouteLocked(e, p); err != nil {
				return err
			}
		} else {
			v.delPrefixRouteLocked(e, p)
		}
	}
	if e.inIMDS {
		if add {
			e.inst.IMDS.AssignPrefix(e.MAC, p.String())
		} else {
			e.inst.IMDS.UnassignPrefix(e.MAC, p.String())
		}
	}
	return nil
}

func (v *VPC) syncSetsLocked(e *eni) error {
	v4, v6 := e.assigned()
	if err := syncPortSets(v.handles[v.Router], e.port, v4, v6); err != nil {
		return fmt.Errorf("vpcsim: update source/destination check for %s: %w", e.MAC, err)
	}
	return nil
}

// Rename renames an ENI's link in the instance as udev would: down,
// rename, and up again only if it was up.
func (v *VPC) Rename(mac, newName string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	if newName == "" || len(newName) > 15 {
		return fmt.Errorf("vpcsim: link name %q must be 1-15 characters", newName)
	}
	link, err := v.instanceLinkByMACLocked(e.inst, e.hw)
	if err != nil {
		return err
	}
	wasUp := link.Attrs().Flags&net.FlagUp != 0
	if wasUp {
		if err := e.inst.nl.LinkSetDown(link); err != nil {
			return fmt.Errorf("vpcsim: rename %s: set down: %w", link.Attrs().Name, err)
		}
	}
	if err := e.inst.nl.LinkSetName(link, newName); err != nil {
		return fmt.Errorf("vpcsim: rename %s to %s: %w", link.Attrs().Name, newName, err)
	}
	if wasUp {
		if err := e.inst.nl.LinkSetUp(link); err != nil {
			return fmt.Errorf("vpcsim: rename %s: set up again: %w", newName, err)
		}
	}
	v.logf("vpcsim: renamed %s to %s (%s)", e.Name, newName, e.MAC)
	e.Name = newName
	return nil
}

// LinkName returns the (first) instance's current name for the ENI's link,
// or "" when that instance has no link with that MAC.
func (v *VPC) LinkName(mac string) string { return v.def.LinkName(mac) }

func (v *VPC) linkNameLocked(i *Instance, mac string) string {
	hw, err := net.ParseMAC(mac)
	if err != nil || v.closed {
		return ""
	}
	link, err := v.instanceLinkByMACLocked(i, hw)
	if err != nil {
		return ""
	}
	return link.Attrs().Name
}

func (v *VPC) instanceLinkByMACLocked(i *Instance, hw net.HardwareAddr) (netlink.Link, error) {
	links, err := i.nl.LinkList()
	if err != nil {
		return nil, fmt.Errorf("vpcsim: list links of %s: %w", i.Name, err)
	}
	for _, l := range links {
		if l.Type() == "veth" && l.Attrs().HardwareAddr.String() == hw.String() {
			return l, nil
		}
	}
	return nil, fmt.Errorf("vpcsim: %s has no link with MAC %s", i.Name, hw)
}

// ENIs returns the specs of the (first) instance's ENIs currently plugged
// in or announced, with their current addresses.
func (v *VPC) ENIs() []ENISpec { return v.def.ENIs() }

// PrimaryIPv4 returns the (first) instance's primary ENI's primary IPv4
// address (invalid before LaunchPrimary).
func (v *VPC) PrimaryIPv4() netip.Addr { return v.def.PrimaryIPv4() }

// Gateway returns the IPv4 gateway of the subnet containing a (invalid if
// none).
func (v *VPC) Gateway(a netip.Addr) netip.Addr {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.subnets {
		if s.ipv4.IsValid() && s.ipv4.Contains(a) {
			return s.gw4
		}
		if s.ipv6.IsValid() && s.ipv6.Contains(a) {
			return s.gw6
		}
	}
	return netip.Addr{}
}

// imdsENILocked is the fake IMDS's view of e.
func (v *VPC) imdsENILocked(e *eni) fakeimds.ENI {
	strs := func(xs []netip.Addr) []string {
		var out []string
		for _, x := range xs {
			out = append(out, x.String())
		}
		return out
	}
	prefixes := func(xs []netip.Prefix) []string {
		var out []string
		for _, x := range xs {
			out = append(out, x.String())
		}
		return out
	}
	ie := fakeimds.ENI{
		MAC:          e.MAC,
		InterfaceID:  e.ID,
		DeviceNumber: e.Device,
		NetworkCard:  e.Card,
		VPCIPv4:      prefixes(v.vpcIPv4),
		IPv4:         strs(e.IPv4),
		IPv6:         strs(e.IPv6),
		IPv4Prefixes: prefixes(e.IPv4Prefixes),
		IPv6Prefixes: prefixes(e.IPv6Prefixes),
	}
	if e.sub.ipv4.IsValid() {
		ie.SubnetIPv4 = e.sub.ipv4.String()
	}
	if e.sub.ipv6.IsValid() {
		ie.SubnetIPv6 = []string{e.sub.ipv6.String()}
		ie.VPCIPv6 = prefixes(v.vpcIPv6)
	}
	return ie
}

// ConfigureWithoutPolicyRouting does in the instance what a distribution
// without ec2net does with a secondary ENI (DHCP on every interface): link
// up and the ENI's addresses on it (IPv4 with the subnet's length, IPv6 as
// /128 without duplicate address detection), but no route table or rules.
// Traffic from these addresses then leaves through the primary ENI and the
// source/destination check drops it: the "before" picture of a demo. The
// addresses are added without any ownership mark, as a foreign tool's
// would be.
func (v *VPC) ConfigureWithoutPolicyRouting(mac string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, err := v.eniLocked(mac)
	if err != nil {
		return err
	}
	link, err := v.instanceLinkByMACLocked(e.inst, e.hw)
	if err != nil {
		return err
	}
	if err := e.inst.nl.LinkSetUp(link); err != nil {
		return fmt.Errorf("vpcsim: set %s up: %w", e.Name, err)
	}
	var ps []netip.Prefix
	for _, a := range e.IPv4 {
		ps = append(ps, netip.PrefixFrom(a, e.sub.ipv4.Bits()))
	}
	for _, a := range e.IPv6 {
		ps = append(ps, hostPrefix(a))
	}
	for _, p := range ps {
		addr := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			addr.Flags = nodadFlag
		}
		if err := e.inst.nl.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("vpcsim: add %s to %s: %w", p, e.Name, err)
		}
	}
	return nil
}

// Addrs parses addresses for ENISpec literals; it panics on a typo, which
// in a test or the demo is the right place to stop.
func Addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}
