package vpcsim

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Plugging an ENI into the router: the veth, the bridge port, the
// source/destination check, and the router's neighbours and routes for
// the ENI's addresses; unplugging removes them again.

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
	for _, step := range []func(*eni) error{v.addVethLocked, v.addBridgePortLocked, v.addRouterEntriesLocked} {
		if err := step(e); err != nil {
			v.unplugLocked(e)
			return err
		}
	}
	v.logf("vpcsim: plugged %s (%s, %s) of %s into %s via %s", e.Name, e.MAC, e.ID, e.inst.Name, e.sub, e.port)
	return nil
}

// addVethLocked creates e's veth: the router end e.port (numbered after
// routerIndexBase), the instance end straight into the instance namespace.
func (v *VPC) addVethLocked(e *eni) error {
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: e.port, Index: routerIndexBase + v.nextPort - 1},
		PeerName:         e.Name,
		PeerHardwareAddr: e.hw,
		PeerNamespace:    netlink.NsFd(int(e.inst.ns)),
	}
	if err := v.router.LinkAdd(veth); err != nil {
		return fmt.Errorf("vpcsim: create %s (%s) in the instance: %w", e.Name, e.MAC, err)
	}
	e.linked = true
	return fastNeighRetrans(e.inst.ns, e.Name)
}

// addBridgePortLocked plugs the router end of e's veth into the subnet
// bridge and sets it up.
func (v *VPC) addBridgePortLocked(e *eni) error {
	port, err := v.router.LinkByName(e.port)
	if err != nil {
		return err
	}
	br, err := v.router.LinkByName(e.sub.bridge)
	if err != nil {
		return err
	}
	if err := v.router.LinkSetMaster(port, br); err != nil {
		return fmt.Errorf("vpcsim: plug %s into %s: %w", e.port, e.sub.bridge, err)
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
		return fmt.Errorf("vpcsim: fdb entry for %s: %w", e.MAC, err)
	}
	if err := v.router.LinkSetUp(port); err != nil {
		return fmt.Errorf("vpcsim: set %s up: %w", e.port, err)
	}
	return nil
}

// addRouterEntriesLocked teaches the router where every address and
// delegated prefix assigned to e lives.
func (v *VPC) addRouterEntriesLocked(e *eni) error {
	for _, a := range append(slices.Clone(e.IPv4), e.IPv6...) {
		if err := v.addNeighLocked(e, a); err != nil {
			return err
		}
	}
	for _, p := range append(slices.Clone(e.IPv4Prefixes), e.IPv6Prefixes...) {
		if err := v.addPrefixRouteLocked(e, p); err != nil {
			return err
		}
	}
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
