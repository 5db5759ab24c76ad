package vpcsim

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// The primary ENI: plugged in at launch and configured as the VPC's DHCP
// and router advertisements would have left it at boot.

// Route protocols a DHCP client and router advertisements leave on EC2.
const (
	protoDHCP = 16
	protoRA   = 9
)

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
