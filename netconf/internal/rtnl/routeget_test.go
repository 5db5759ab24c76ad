package rtnl

import (
	"errors"
	"net/netip"
	"os"
	"testing"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"golang.org/x/sys/unix"
)

var (
	rgSecondary = netip.MustParseAddr("100.64.2.10")
	rgRemote    = netip.MustParseAddr("198.51.100.1")
	rgGw        = netip.MustParseAddr("100.64.2.1")
	rgSecond6   = netip.MustParseAddr("2001:db8:0:2::10")
	rgRemote6   = netip.MustParseAddr("2001:db8:ffff:ffff::1")
)

// routedBed is eth1 up with a secondary-ENI layout: the address, table
// 10001 (subnet and default routes, IPv4 and IPv6) and the "from" rules.
func routedBed(t *testing.T) *bed {
	b := newBed(t)
	i := b.link.Index
	lo := b.linkNamed("lo").Index
	b.send(func(m *Msg) { m.EncodeLinkUp(i) }, func(m *Msg) { m.EncodeLinkUp(lo) },
		func(m *Msg) {
			m.EncodeAddr(Add, Addr{Index: i, Prefix: netip.PrefixFrom(rgSecondary, 24), Flags: unix.IFA_F_NOPREFIXROUTE})
		},
		func(m *Msg) {
			m.EncodeAddr(Add, Addr{Index: i, Prefix: netip.PrefixFrom(rgSecond6, 128), Flags: unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE})
		})
	b.send(
		func(m *Msg) {
			m.EncodeRoute(Add, Route{Table: 10001, Proto: 236, Type: unix.RTN_UNICAST, Scope: unix.RT_SCOPE_LINK, OIF: i,
				Dst: netip.MustParsePrefix("100.64.2.0/24"), Src: rgSecondary})
		},
		func(m *Msg) {
			m.EncodeRoute(Add, Route{Table: 10001, Proto: 236, Type: unix.RTN_UNICAST, OIF: i,
				Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: rgGw})
		},
		func(m *Msg) {
			m.EncodeRoute(Add, Route{Table: 10001, Proto: 236, Type: unix.RTN_UNICAST, OIF: i,
				Dst: netip.MustParsePrefix("::/0"), Gw: netip.MustParseAddr("fe80:ec2::1")})
		},
		func(m *Msg) {
			m.EncodeRule(Add, Rule{Family: 4, Priority: 10001, Table: 10001, Proto: 236, Src: netip.PrefixFrom(rgSecondary, 32)})
		},
		func(m *Msg) {
			m.EncodeRule(Add, Rule{Family: 6, Priority: 10001, Table: 10001, Proto: 236, Src: netip.PrefixFrom(rgSecond6, 128)})
		})
	return b
}

// The lookups status makes, asked of a real kernel: the path out, the
// matched route entry, the input lookup for a reply, and the errors.
func TestRouteGetRoundTrip(t *testing.T) {
	b := routedBed(t)
	i := b.link.Index
	qs := []RouteQuery{
		{Src: rgSecondary, Dst: rgRemote},
		{Src: rgSecondary, Dst: rgRemote, FIBMatch: true},
		{Src: rgRemote, Dst: rgSecondary, IIF: i},
		{Src: rgSecond6, Dst: rgRemote6},
		{Dst: rgRemote}, // no source: no rule, main has no route
	}
	answers, errs := b.w.RouteGet(qs)
	for k := 0; k < 4; k++ {
		if errs[k] != nil {
			t.Fatalf("query %d %+v: %v", k, qs[k], errs[k])
		}
	}
	if a := answers[0]; a.Table != 10001 || a.OIF != i || a.Gw != rgGw || a.Type != unix.RTN_UNICAST || a.Dst != netip.PrefixFrom(rgRemote, 32) {
		t.Errorf("path out: %+v", a)
	}
	if a := answers[1]; a.Table != 10001 || a.Proto != 236 || a.Dst != netip.MustParsePrefix("0.0.0.0/0") || a.Gw != rgGw {
		t.Errorf("fibmatch: %+v, want the default route of table 10001", a)
	}
	if a := answers[2]; a.Type != unix.RTN_LOCAL || a.IIF != i {
		t.Errorf("input lookup: %+v, want local delivery", a)
	}
	if a := answers[3]; a.Family != 6 || a.Table != 10001 || a.OIF != i || a.Gw != netip.MustParseAddr("fe80:ec2::1") {
		t.Errorf("IPv6 path out: %+v", a)
	}
	if !errors.Is(errs[4], unix.ENETUNREACH) {
		t.Errorf("no route: %v, want ENETUNREACH", errs[4])
	}
}

// A foreign rule of higher priority wins, and with strict rp_filter the
// kernel refuses what arrives for the address (EINVAL).
func TestRouteGetShadowedAndReversePathFilter(t *testing.T) {
	b := routedBed(t)
	i := b.link.Index
	lo := b.linkNamed("lo").Index
	b.send(func(m *Msg) {
		m.EncodeRoute(Add, Route{Table: 100, Type: unix.RTN_UNICAST, Scope: unix.RT_SCOPE_LINK, OIF: lo,
			Dst: netip.MustParsePrefix("0.0.0.0/0")})
	}, func(m *Msg) {
		m.EncodeRule(Add, Rule{Family: 4, Priority: 100, Table: 100, Src: netip.PrefixFrom(rgSecondary, 32)})
	})
	for _, k := range []string{"all", "eth1"} {
		if err := nsutil.Do(b.ns, func() error {
			return os.WriteFile("/proc/sys/net/ipv4/conf/"+k+"/rp_filter", []byte("1"), 0o644)
		}); err != nil {
			t.Fatal(err)
		}
	}
	answers, errs := b.w.RouteGet([]RouteQuery{{Src: rgSecondary, Dst: rgRemote}, {Src: rgRemote, Dst: rgSecondary, IIF: i}})
	if errs[0] != nil || answers[0].Table != 100 || answers[0].OIF != lo {
		t.Errorf("shadowed path: %+v %v, want table 100 dev lo", answers[0], errs[0])
	}
	if !errors.Is(errs[1], unix.EINVAL) {
		t.Errorf("input lookup under strict rp_filter: %+v %v, want EINVAL", answers[1], errs[1])
	}
	// The rule dump names the winner: the first rule by priority that
	// selects the flow and looks up table 100.
	var winner *RuleMatch
	if err := b.d.RuleMatches(func(r RuleMatch) {
		if winner == nil && r.Table == 100 && r.Matches(Flow{Src: rgSecondary, Dst: rgRemote, IIF: "lo"}) {
			winner = &r
		}
	}); err != nil {
		t.Fatal(err)
	}
	if winner == nil || winner.Priority != 100 || winner.Src != netip.PrefixFrom(rgSecondary, 32) {
		t.Errorf("winning rule %+v", winner)
	}
}

// Hundreds of lookups in one call: batches of WriteBatch, one answer each.
func TestRouteGetBatches(t *testing.T) {
	b := routedBed(t)
	qs := make([]RouteQuery, 3*WriteBatch+7)
	for k := range qs {
		qs[k] = RouteQuery{Src: rgSecondary, Dst: rgRemote}
		if k%5 == 0 {
			qs[k].Src = netip.Addr{} // ENETUNREACH: no rule selects it
		}
	}
	answers, errs := b.w.RouteGet(qs)
	for k := range qs {
		if k%5 == 0 {
			if !errors.Is(errs[k], unix.ENETUNREACH) {
				t.Fatalf("query %d: %v, want ENETUNREACH", k, errs[k])
			}
			continue
		}
		if errs[k] != nil || answers[k].Table != 10001 {
			t.Fatalf("query %d: %+v %v", k, answers[k], errs[k])
		}
	}
	// The socket is still in step for ordinary writes.
	b.send(func(m *Msg) { m.EncodeLinkMTU(b.link.Index, 9001) })
}
