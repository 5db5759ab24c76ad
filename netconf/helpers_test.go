package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// bed is a throwaway namespace with veth links standing in for ENIs.
type bed struct {
	t    testing.TB
	name string
	ns   netns.NsHandle
	h    *netlink.Handle
	dir  string
}

func newBed(t testing.TB) *bed {
	t.Helper()
	name, ns := nstest.NewTestNS(t, "ec2nc")
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return &bed{t: t, name: name, ns: ns, h: h, dir: t.TempDir()}
}

// veth creates an ENI stand-in: name carries mac, its peer (name+"p") is
// up so the ENI end gets carrier once ec2net brings it up.
func (b *bed) veth(name, mac string) netlink.Link {
	b.t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		b.t.Fatal(err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: hw}, PeerName: name + "p"}
	if err := b.h.LinkAdd(v); err != nil {
		b.t.Fatalf("add veth %s: %v", name, err)
	}
	peer, err := b.h.LinkByName(name + "p")
	if err != nil {
		b.t.Fatal(err)
	}
	if err := b.h.LinkSetUp(peer); err != nil {
		b.t.Fatal(err)
	}
	l, err := b.h.LinkByName(name)
	if err != nil {
		b.t.Fatal(err)
	}
	return l
}

func (b *bed) up(l netlink.Link) {
	b.t.Helper()
	if err := b.h.LinkSetUp(l); err != nil {
		b.t.Fatal(err)
	}
}

// ip runs iproute2 in the bed's namespace (for setting up foreign objects
// and for byte-for-byte dumps, independent of the code under test).
func (b *bed) ip(args ...string) string {
	b.t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", b.name}, args...)...).CombinedOutput()
	if err != nil {
		b.t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// dump is the namespace's addresses, routes (every table) and rules as ip
// prints them.
func (b *bed) dump() string {
	return b.ip("-o", "addr", "show") + b.ip("-4", "route", "show", "table", "all") +
		b.ip("-6", "route", "show", "table", "all") + b.ip("-4", "rule", "show") + b.ip("-6", "rule", "show")
}

func (b *bed) reconciler() *Reconciler {
	b.t.Helper()
	r, err := New(Options{NetNS: b.ns, StateDir: b.dir})
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { r.Close() })
	return r
}

// addrs returns "dev addr/len [noprefixroute] [nodad]" for global addresses.
func (b *bed) addrs() []string {
	b.t.Helper()
	as, err := b.h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		if a.IP.IsLoopback() || a.IP.IsLinkLocalUnicast() {
			continue
		}
		l, _ := b.h.LinkByIndex(a.LinkIndex)
		s := l.Attrs().Name + " " + a.IPNet.String()
		if a.Flags&unix.IFA_F_NOPREFIXROUTE != 0 {
			s += " noprefixroute"
		}
		if a.Flags&unix.IFA_F_NODAD != 0 {
			s += " nodad"
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// routes returns the routes of one table as "dst via gw dev d src s scope n proto p".
func (b *bed) routes(table int) []string {
	b.t.Helper()
	rs, err := b.h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if table == unix.RT_TABLE_LOCAL && r.Protocol != Protocol {
			continue
		}
		if table == unix.RT_TABLE_MAIN && r.Dst != nil && r.Dst.IP.IsLinkLocalUnicast() {
			continue
		}
		s := r.Dst.String()
		if r.Type == unix.RTN_LOCAL {
			s = "local " + s
		}
		if r.Gw != nil {
			s += " via " + r.Gw.String()
		}
		l, _ := b.h.LinkByIndex(r.LinkIndex)
		if l != nil {
			s += " dev " + l.Attrs().Name
		}
		if r.Src != nil {
			s += " src " + r.Src.String()
		}
		if r.Dst.IP.To4() != nil {
			s += fmt.Sprintf(" scope %d", r.Scope)
		}
		s += fmt.Sprintf(" proto %d", r.Protocol)
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// rules returns the rules in 10000-10999 as "pref from table proto".
func (b *bed) rules() []string {
	b.t.Helper()
	rs, err := b.h.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		if r.Priority < 10000 || r.Priority > 10999 {
			continue
		}
		src := "all"
		if r.Src != nil {
			src = r.Src.String()
		}
		out = append(out, fmt.Sprintf("%d from %s table %d proto %d", r.Priority, src, r.Table, r.Protocol))
	}
	sort.Strings(out)
	return out
}

func equalSets(t testing.TB, what string, got, want []string) {
	t.Helper()
	got = append([]string(nil), got...)
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got:\n  %s\nwant:\n  %s", what, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

const (
	macPrimary = "02:00:00:00:01:00"
	macEth1    = "02:00:00:00:01:01"
	macEth2    = "02:00:00:00:01:02"
	macEth3    = "02:00:00:00:01:03"
)

func primary() imds.ENI {
	return imds.ENI{MAC: macPrimary, Primary: true, InterfaceID: "eni-00primary", DeviceNumber: 0,
		SubnetIPv4: pfx("100.64.1.0/24"), SubnetIPv6: []netip.Prefix{pfx("2001:db8:0:1::/64")},
		IPv4: ips("100.64.1.10", "100.64.1.11"), IPv6: ips("2001:db8:0:1::10")}
}

func secondary() imds.ENI {
	return imds.ENI{MAC: macEth1, InterfaceID: "eni-00second", DeviceNumber: 1,
		SubnetIPv4: pfx("100.64.2.0/24"), SubnetIPv6: []netip.Prefix{pfx("2001:db8:0:2::/64")},
		IPv4: ips("100.64.2.10", "100.64.2.11"), IPv6: ips("2001:db8:0:2::10"),
		IPv4Prefixes: []netip.Prefix{pfx("100.64.2.64/28")}, IPv6Prefixes: []netip.Prefix{pfx("2001:db8:0:2:1::/80")}}
}

func snap(enis ...imds.ENI) *imds.Snapshot {
	sort.Slice(enis, func(i, j int) bool { return enis[i].MAC < enis[j].MAC })
	return &imds.Snapshot{PrimaryMAC: macPrimary, ENIs: enis}
}

// withPrimary builds eth0 as a DHCP client would have left it: up, its
// primary address with the subnet route in main, and the default route.
func (b *bed) withPrimary() netlink.Link {
	b.t.Helper()
	l := b.veth("eth0", macPrimary)
	b.up(l)
	b.ip("addr", "add", "100.64.1.10/24", "dev", "eth0")
	b.ip("route", "add", "default", "via", "100.64.1.1", "dev", "eth0", "proto", "dhcp", "metric", "512")
	return l
}

func cfg() config.Config { return config.Default() }

func mustApply(t testing.TB, r *Reconciler, s *imds.Snapshot, c config.Config) *Result {
	t.Helper()
	res, err := r.Apply(s, c)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if f := res.Failed(); len(f) > 0 {
		t.Fatalf("apply failures: %v", f)
	}
	return res
}

// launchSpecs launches specs[0] as the primary ENI, attaches the others,
// and returns the snapshot IMDS gives of them, every ENI complete.
func launchSpecs(t *testing.T, v *vpcsim.VPC, specs []vpcsim.ENISpec) *imds.Snapshot {
	t.Helper()
	if err := v.LaunchPrimary(specs[0]); err != nil {
		t.Fatal(err)
	}
	for _, s := range specs[1:] {
		if err := v.Attach(s); err != nil {
			t.Fatal(err)
		}
	}
	snap := &imds.Snapshot{PrimaryMAC: specs[0].MAC}
	for _, sp := range specs {
		e := imds.ENI{MAC: sp.MAC, Primary: sp.Device == 0, InterfaceID: sp.ID, DeviceNumber: sp.Device,
			SubnetIPv4: sp.SubnetIPv4, IPv4: sp.IPv4, IPv6: sp.IPv6, State: imds.Complete,
			IPv4Prefixes: sp.IPv4Prefixes, IPv6Prefixes: sp.IPv6Prefixes}
		if sp.SubnetIPv6.IsValid() {
			e.SubnetIPv6 = []netip.Prefix{sp.SubnetIPv6}
		}
		snap.ENIs = append(snap.ENIs, e)
	}
	return snap
}
