package rtnl

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Each message type goes encode -> kernel -> dump -> decode, in a
// throwaway namespace, and must come back as written.

type bed struct {
	t    *testing.T
	ns   netns.NsHandle
	w    *Writer
	d    *Dumper
	link Link
}

func newBed(t *testing.T) *bed {
	t.Helper()
	_, ns := nstest.NewTestNS(t, "ec2rt")
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	hw, _ := net.ParseMAC("02:00:00:00:0a:01")
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth1", HardwareAddr: hw}, PeerName: "eth1p"}); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	d, err := NewDumper(ns, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	b := &bed{t: t, ns: ns, w: w, d: d}
	b.link = b.linkNamed("eth1")
	return b
}

func (b *bed) linkNamed(name string) Link {
	b.t.Helper()
	ls, err := b.d.Links()
	if err != nil {
		b.t.Fatal(err)
	}
	for _, l := range ls {
		if l.Name == name {
			return l
		}
	}
	b.t.Fatalf("no link %s in %+v", name, ls)
	return Link{}
}

// send writes the encoded requests and fails the test on any error.
func (b *bed) send(encs ...func(m *Msg)) {
	b.t.Helper()
	for i, err := range b.w.Send(len(encs), func(i int, m *Msg) { encs[i](m) }) {
		if err != nil {
			b.t.Fatalf("request %d: %v", i, err)
		}
	}
}

func TestLinkRoundTrip(t *testing.T) {
	b := newBed(t)
	if b.link.MAC != "02:00:00:00:0a:01" || b.link.Up {
		t.Fatalf("dumped link %+v", b.link)
	}
	i := b.link.Index
	b.send(func(m *Msg) { m.EncodeLinkUp(i) }, func(m *Msg) { m.EncodeLinkMTU(i, 9001) },
		func(m *Msg) { m.EncodeAltName(i, "eni-0123") })
	l := b.linkNamed("eth1")
	if !l.Up || l.MTU != 9001 || !slices.Equal(l.AltNames, []string{"eni-0123"}) {
		t.Errorf("after writes: %+v", l)
	}
}

func TestAddrRoundTrip(t *testing.T) {
	b := newBed(t)
	want := []Addr{
		{Index: b.link.Index, Prefix: netip.MustParsePrefix("100.64.2.10/24"), Flags: unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_PERMANENT},
		{Index: b.link.Index, Prefix: netip.MustParsePrefix("2001:db8:0:2::10/128"), Flags: unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_NODAD | unix.IFA_F_PERMANENT},
	}
	for _, a := range want {
		b.send(func(m *Msg) { m.EncodeAddr(Add, a) })
	}
	got := b.addrs()
	for _, a := range want {
		if g, ok := got[a.Prefix]; !ok || g.Flags&a.Flags != a.Flags || g.Index != a.Index {
			t.Errorf("%v: dumped %+v", a.Prefix, g)
		}
	}
	// Adding again fails per request with the kernel's errno.
	errs := b.w.Send(2, func(i int, m *Msg) { m.EncodeAddr(Add, want[i]) })
	for _, err := range errs {
		if !errors.Is(err, unix.EEXIST) {
			t.Errorf("second add: %v, want EEXIST", err)
		}
	}
	b.send(func(m *Msg) { m.EncodeAddr(Del, want[0]) }, func(m *Msg) { m.EncodeAddr(Del, want[1]) })
	if got := b.addrs(); len(got) != 0 {
		t.Errorf("after delete: %+v", got)
	}
}

// addrs returns the link's global addresses by prefix.
func (b *bed) addrs() map[netip.Prefix]Addr {
	b.t.Helper()
	out := map[netip.Prefix]Addr{}
	if err := b.d.Addrs(func(a Addr) {
		if a.Index == b.link.Index && !a.Prefix.Addr().IsLinkLocalUnicast() {
			out[a.Prefix] = a
		}
	}); err != nil {
		b.t.Fatal(err)
	}
	return out
}

// The address protocol (IFA_PROTO, Linux 5.18) round-trips; a kernel
// without it ignores the attribute (lenient parsing) and dumps 0.
func TestAddrProtoRoundTrip(t *testing.T) {
	b := newBed(t)
	a := Addr{Index: b.link.Index, Prefix: netip.MustParsePrefix("100.64.2.11/32"), Proto: 236}
	b.send(func(m *Msg) { m.EncodeAddr(Add, a) })
	got, ok := b.addrs()[a.Prefix]
	if !ok {
		t.Fatalf("address with a protocol not added")
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	release := unix.ByteSliceToString(uts.Release[:])
	if got.Proto != 236 && kernelAtLeast(release, 5, 18) {
		t.Errorf("proto %d on kernel %s, want 236", got.Proto, release)
	}
	t.Logf("kernel %s: address protocol %d", release, got.Proto)
}

// accept_ra, set through its sysctl in the namespace, is what the link
// dump says (IFLA_AF_SPEC → AF_INET6 → IFLA_INET6_CONF), both ways; a link
// without IPv6 does not accept router advertisements. (disable_ipv6 keeps
// the link's IPv6 configuration, accept_ra included, as its sysctl does.)
func TestLinkAcceptRAFromTheDump(t *testing.T) {
	b := newBed(t)
	set := func(link, v string) {
		t.Helper()
		if err := nsutil.Do(b.ns, func() error {
			return os.WriteFile("/proc/sys/net/ipv6/conf/"+link+"/"+v[:strings.IndexByte(v, '=')], []byte(v[strings.IndexByte(v, '=')+1:]), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		sysctl string
		want   bool
	}{{"accept_ra=1", true}, {"accept_ra=0", false}, {"accept_ra=2", true}} {
		set("eth1", c.sysctl)
		if got := b.linkNamed("eth1").AcceptRA; got != c.want {
			t.Errorf("%s: the dump says accept_ra on = %v", c.sysctl, got)
		}
	}
	// An MTU below IPv6's minimum takes IPv6 off the link altogether (its
	// conf directory goes): nothing to accept advertisements with.
	set("eth1", "accept_ra=1")
	h, err := netlink.NewHandleAt(b.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("eth1")
	if err == nil {
		err = h.LinkSetMTU(l, 1200)
	}
	if err != nil {
		t.Fatal(err)
	}
	if b.linkNamed("eth1").AcceptRA {
		t.Errorf("IPv6 off on the link, yet it accepts router advertisements")
	}
}

func kernelAtLeast(release string, major, minor int) bool {
	var a, b int
	if _, err := fmt.Sscanf(release, "%d.%d", &a, &b); err != nil {
		return false
	}
	return a > major || a == major && b >= minor
}

func TestRouteRoundTrip(t *testing.T) {
	b := newBed(t)
	i := b.link.Index
	b.send(func(m *Msg) { m.EncodeLinkUp(i) },
		func(m *Msg) { m.EncodeAddr(Add, Addr{Index: i, Prefix: netip.MustParsePrefix("100.64.2.10/24")}) })
	subnet := Route{Family: 4, Table: 10001, Proto: 236, Scope: unix.RT_SCOPE_LINK, Type: unix.RTN_UNICAST, OIF: i,
		Dst: netip.MustParsePrefix("100.64.2.0/24"), Src: netip.MustParseAddr("100.64.2.10")}
	def := Route{Family: 4, Table: 10001, Proto: 236, Type: unix.RTN_UNICAST, OIF: i,
		Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: netip.MustParseAddr("100.64.2.1")}
	v6 := Route{Family: 6, Table: 10001, Proto: 236, Type: unix.RTN_UNICAST, OIF: i,
		Dst: netip.MustParsePrefix("::/0"), Gw: netip.MustParseAddr("fe80:ec2::1")}
	local := Route{Family: 4, Table: unix.RT_TABLE_LOCAL, Proto: 236, Scope: unix.RT_SCOPE_HOST, Type: unix.RTN_LOCAL, OIF: 1,
		Dst: netip.MustParsePrefix("100.64.2.64/28")}
	b.send(func(m *Msg) { m.EncodeRoute(Add, subnet) }, func(m *Msg) { m.EncodeRoute(Add, def) },
		func(m *Msg) { m.EncodeRoute(Add, v6) }, func(m *Msg) { m.EncodeRoute(Add, local) })
	got := b.routes(0, 236)
	v6.Metric = 1024 // the kernel's default for IPv6
	for _, want := range []Route{subnet, def, v6, local} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %+v in %+v", want, got)
		}
	}
	if n := len(b.routes(10001, 0)); n != 3 {
		t.Errorf("table 10001 filter: %d routes, want 3", n)
	}
	// Replace changes the gateway in place.
	def.Gw = netip.MustParseAddr("100.64.2.2")
	b.send(func(m *Msg) { m.EncodeRoute(Replace, def) })
	if !slices.Contains(b.routes(10001, 236), def) {
		t.Errorf("replace not applied: %+v", b.routes(10001, 236))
	}
	b.send(func(m *Msg) { m.EncodeRoute(Del, def) }, func(m *Msg) { m.EncodeRoute(Del, subnet) },
		func(m *Msg) { m.EncodeRoute(Del, v6) }, func(m *Msg) { m.EncodeRoute(Del, local) })
	if got := b.routes(0, 236); len(got) != 0 {
		t.Errorf("after delete: %+v", got)
	}
}

func (b *bed) routes(table, proto int) []Route {
	b.t.Helper()
	var out []Route
	if err := b.d.Routes(table, proto, func(r Route) { out = append(out, r) }); err != nil {
		b.t.Fatal(err)
	}
	return out
}

func TestRuleRoundTrip(t *testing.T) {
	b := newBed(t)
	lax, err := NewDumper(b.ns, false)
	if err != nil {
		t.Fatal(err)
	}
	defer lax.Close()
	ours := []Rule{
		{Family: 4, Priority: 10001, Table: 10001, Proto: 236, Src: netip.MustParsePrefix("100.64.2.10/32"), Simple: true},
		{Family: 6, Priority: 10001, Table: 10001, Proto: 236, Src: netip.MustParsePrefix("2001:db8:0:2:1::/80"), Simple: true},
	}
	// A foreign twin of the first (no protocol) must survive our delete.
	twin := ours[0]
	twin.Proto = 0
	b.send(func(m *Msg) { m.EncodeRule(Add, ours[0]) }, func(m *Msg) { m.EncodeRule(Add, ours[1]) },
		func(m *Msg) { m.EncodeRule(Add, twin) })
	rules := func() []Rule {
		var out []Rule
		if err := lax.Rules(func(r Rule) {
			if r.Priority == 10001 {
				out = append(out, r)
			}
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := rules()
	for _, want := range append(ours, twin) {
		if !slices.Contains(got, want) {
			t.Errorf("missing %+v in %+v", want, got)
		}
	}
	b.send(func(m *Msg) { m.EncodeRule(Del, ours[0]) }, func(m *Msg) { m.EncodeRule(Del, ours[1]) })
	if got := rules(); !slices.Equal(got, []Rule{twin}) {
		t.Errorf("after deleting ours: %+v, want only the foreign twin", got)
	}
}
