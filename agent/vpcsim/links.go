package vpcsim

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Link helpers shared by every namespace the simulator builds: addresses,
// link state and waiting until the kernel reports a link usable.

// nodadFlag is IFA_F_NODAD.
const nodadFlag = unix.IFA_F_NODAD

// fastNeighRetrans shortens the neighbour solicitation retry of one link
// from a second to 100 ms. A veth's carrier reaches the bridge port and
// IPv6 addrconf through the kernel's linkwatch work, which on a busy
// machine lags behind "link up" by up to hundreds of milliseconds; the
// first ARP request or solicitation sent meanwhile is lost, and with the
// default retry a probe of a freshly configured link would time out. (New
// namespaces have no neigh/default sysctls: it is set per link.)
func fastNeighRetrans(h netns.NsHandle, link string) error {
	for _, fam := range []string{"ipv4", "ipv6"} {
		if err := sysctl(h, "net/"+fam+"/neigh/"+link+"/retrans_time_ms", "100"); err != nil {
			return err
		}
	}
	return nil
}

// linkReadyTimeout bounds waiting for the kernel to report a link usable.
const linkReadyTimeout = 5 * time.Second

// waitOperUp polls until the link's operational state is up: only then
// have the bridge (for a port) and IPv6 addrconf seen its carrier.
func waitOperUp(ctx context.Context, h *netlink.Handle, name string) error {
	for {
		l, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("vpcsim: link %s: %w", name, err)
		}
		if l.Attrs().OperState == netlink.OperUp {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vpcsim: link %s not operational (state %s): %w", name, l.Attrs().OperState, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitPortForwarding polls until the bridge port in namespace h forwards
// frames (its STP state, read through netlink).
func waitPortForwarding(ctx context.Context, h netns.NsHandle, nl *netlink.Handle, port string) error {
	l, err := nl.LinkByName(port)
	if err != nil {
		return fmt.Errorf("vpcsim: bridge port %s: %w", port, err)
	}
	for {
		state, err := bridgePortState(h, l.Attrs().Index)
		if err == nil && state == brStateForwarding {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vpcsim: bridge port %s not forwarding (state %d, %v): %w", port, state, err, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func linkUp(h *netlink.Handle, name string) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("vpcsim: link %s: %w", name, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("vpcsim: set %s up: %w", name, err)
	}
	return nil
}

// addAddrs adds addresses to a link; IPv6 ones without duplicate address
// detection (the simulator's own addresses must work at once).
func addAddrs(h *netlink.Handle, name string, prefixes ...netip.Prefix) error {
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("vpcsim: link %s: %w", name, err)
	}
	for _, p := range prefixes {
		a := &netlink.Addr{IPNet: ipNet(p)}
		if p.Addr().Is6() {
			a.Flags = nodadFlag
		}
		if err := h.AddrReplace(l, a); err != nil {
			return fmt.Errorf("vpcsim: add %s to %s: %w", p, name, err)
		}
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func hostPrefix(a netip.Addr) netip.Prefix {
	return netip.PrefixFrom(a, a.BitLen())
}
