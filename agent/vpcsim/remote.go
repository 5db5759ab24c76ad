package vpcsim

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// The remote host outside the VPC, behind the router's uplink.

// setupRemote links the router to the remote host: a veth "uplink" in the
// router, "eth0" in Remote, with the remote's default routes via the
// router.
func (v *VPC) setupRemote() error {
	remoteNS := v.handles[v.Remote]
	uplink := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: "uplink", Index: routerIndexBase},
		PeerName:      "eth0",
		PeerNamespace: netlink.NsFd(int(remoteNS)),
	}
	if err := v.router.LinkAdd(uplink); err != nil {
		return fmt.Errorf("vpcsim: create remote link: %w", err)
	}
	if err := addAddrs(v.router, "uplink", routerUplinkIPv4, routerUplinkIPv6); err != nil {
		return err
	}
	if err := fastNeighRetrans(v.handles[v.Router], "uplink"); err != nil {
		return err
	}
	if err := fastNeighRetrans(remoteNS, "eth0"); err != nil {
		return err
	}
	if err := linkUp(v.router, "uplink"); err != nil {
		return err
	}
	remote, err := netlink.NewHandleAt(remoteNS)
	if err != nil {
		return fmt.Errorf("vpcsim: netlink in remote: %w", err)
	}
	defer remote.Close()
	if err := addAddrs(remote, "eth0",
		netip.PrefixFrom(v.RemoteIPv4, routerUplinkIPv4.Bits()),
		netip.PrefixFrom(v.RemoteIPv6, routerUplinkIPv6.Bits())); err != nil {
		return err
	}
	if err := linkUp(remote, "eth0"); err != nil {
		return err
	}
	link, err := remote.LinkByName("eth0")
	if err != nil {
		return err
	}
	for _, gw := range []netip.Addr{routerUplinkIPv4.Addr(), routerUplinkIPv6.Addr()} {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: net.IP(gw.AsSlice())}
		if gw.Is4() {
			r.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
		} else {
			r.Dst = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
		}
		if err := remote.RouteReplace(r); err != nil {
			return fmt.Errorf("vpcsim: remote default route via %s: %w", gw, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), linkReadyTimeout)
	defer cancel()
	if err := waitOperUp(ctx, v.router, "uplink"); err != nil {
		return err
	}
	return waitOperUp(ctx, remote, "eth0")
}
