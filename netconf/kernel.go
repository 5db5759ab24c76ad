package netconf

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"

	"github.com/ec2net/ec2net/netconf/plan"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernel is one read of the namespace: every kind dumped once per
// reconcile, no per-object queries.
type kernel struct {
	links   []plan.LinkInfo
	byIndex map[int]*plan.LinkInfo
	byMAC   map[string]*plan.LinkInfo
	addrs   map[int][]kAddr // by link index
	routes  []kRoute        // routes in the per-ENI range, owned routes anywhere, local-table prefixes
	rules   []kRule         // every rule with a source or in our range
}

type kAddr struct {
	prefix netip.Prefix
	flags  int
}

type kRoute struct {
	family   int // 4 or 6
	table    int
	typ      int // unix.RTN_*
	dst      netip.Prefix
	gw       netip.Addr
	src      netip.Addr
	scope    int
	oif      int
	proto    int
	metric   int
	tos      int
	multi    bool // multipath: never equal to a desired route
	nl       netlink.Route
	consumed bool // matched a desired route in this pass
}

type kRule struct {
	family    int
	prio      int
	src       netip.Prefix // invalid: from all
	table     int
	proto     int
	simple    bool   // only from/lookup/pref: no other selector, action "to table"
	selectors string // the other selectors, iproute2-like, when not simple
	consumed  bool
}

func addrFromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

func prefixFromIPNet(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	a := addrFromIP(n.IP)
	if !a.IsValid() {
		return netip.Prefix{}
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a, ones)
}

func ipNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

func netIP(a netip.Addr) net.IP {
	if !a.IsValid() {
		return nil
	}
	return net.IP(a.AsSlice())
}

// read dumps links, addresses, routes and rules. driverFor names the links
// whose driver is wanted (ENI links under MTU auto).
func (r *Reconciler) read(driverFor map[string]bool) (*kernel, error) {
	k := &kernel{byIndex: map[int]*plan.LinkInfo{}, byMAC: map[string]*plan.LinkInfo{}, addrs: map[int][]kAddr{}}
	links, err := r.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		a := l.Attrs()
		li := plan.LinkInfo{Index: a.Index, Name: a.Name, MAC: strings.ToLower(a.HardwareAddr.String()),
			MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, AltNames: a.AltNames}
		if driverFor[li.MAC] {
			li.Driver = r.driver(a.Name)
		}
		k.links = append(k.links, li)
	}
	for i := range k.links {
		l := &k.links[i]
		k.byIndex[l.Index] = l
		if l.MAC != "" {
			if prev, ok := k.byMAC[l.MAC]; !ok || l.Index < prev.Index {
				k.byMAC[l.MAC] = l
			}
		}
	}

	if err := r.raw.dumpAddrs(k); err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	if err := r.raw.dumpRules(k); err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list rules: %w", err)
	}
	return k, nil
}

// readOwnedRoutes dumps every route carrying Protocol, in any table,
// filtered by the kernel (strict checking) rather than by us: a full dump
// would drag the local table (a route per address, thousands on a busy
// instance) through userspace on every pass.
func (r *Reconciler) readOwnedRoutes(k *kernel) error {
	err := r.hs.RouteListFilteredIter(netlink.FAMILY_ALL,
		&netlink.Route{Table: unix.RT_TABLE_UNSPEC, Protocol: Protocol}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL,
		func(rt netlink.Route) bool {
			if kr, keep := routeOf(rt); keep && kr.proto == Protocol {
				k.routes = append(k.routes, kr)
			}
			return true
		})
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list routes: %w", err)
	}
	return nil
}

// readTables adds the foreign routes of the given tables (one dump each,
// filtered by the kernel).
func (r *Reconciler) readTables(k *kernel, tables map[int]bool) error {
	ts := make([]int, 0, len(tables))
	for t := range tables {
		ts = append(ts, t)
	}
	sort.Ints(ts)
	for _, t := range ts {
		err := r.hs.RouteListFilteredIter(netlink.FAMILY_ALL, &netlink.Route{Table: t}, netlink.RT_FILTER_TABLE,
			func(rt netlink.Route) bool {
				if int(rt.Protocol) == Protocol || rt.Table != t {
					return true // already read / not filtered by an old kernel
				}
				if kr, keep := routeOf(rt); keep {
					k.routes = append(k.routes, kr)
				}
				return true
			})
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return fmt.Errorf("list routes of table %d: %w", t, err)
		}
	}
	return nil
}

// routeOf converts a dumped route and says whether the reconciler cares:
// owned routes anywhere and every route in the per-ENI tables (to diff and
// to report foreign ones).
func routeOf(rt netlink.Route) (kRoute, bool) {
	kr := kRoute{table: rt.Table, typ: rt.Type, scope: int(rt.Scope), oif: rt.LinkIndex, proto: int(rt.Protocol),
		metric: rt.Priority, tos: rt.Tos, multi: len(rt.MultiPath) > 0, nl: rt}
	kr.dst = prefixFromIPNet(rt.Dst)
	if !kr.dst.IsValid() {
		return kr, false
	}
	kr.family = 4
	if kr.dst.Addr().Is6() {
		kr.family = 6
	}
	kr.gw = addrFromIP(rt.Gw)
	kr.src = addrFromIP(rt.Src)
	switch {
	case kr.proto == Protocol, plan.InRange(kr.table):
		return kr, true
	}
	return kr, false
}

// driver returns the link's driver name via the ethtool ioctl on a socket
// created inside the namespace (sysfs would show the namespace of whoever
// mounted /sys, not ours). "" when the link has no ethtool support.
func (r *Reconciler) driver(name string) string {
	if r.ethFD < 0 {
		return ""
	}
	info, err := unix.IoctlGetEthtoolDrvinfo(r.ethFD, name)
	if err != nil {
		return ""
	}
	return unix.ByteSliceToString(info.Driver[:])
}
