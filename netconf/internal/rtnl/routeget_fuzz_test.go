package rtnl

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// answerSeed is a route lookup answer as the kernel writes it: the
// query's header with a table, type, output link, gateway and source.
func answerSeed() []byte {
	var m Msg
	m.EncodeRoute(Add, Route{Table: 10001, Proto: 236, Type: unix.RTN_UNICAST, OIF: 3, Metric: 5,
		Dst: netip.MustParsePrefix("198.51.100.1/32"), Gw: netip.MustParseAddr("100.64.2.1"), Src: netip.MustParseAddr("100.64.2.10")})
	b := m.Bytes()[unix.NLMSG_HDRLEN:]
	b[9] |= 0x2 // RTM_F_CLONED (0x200) in rtm_flags, as every resolved answer has
	return b
}

// FuzzDecodeRouteGet feeds arbitrary bytes to the decoders of route
// lookup answers and full rules: neither may panic, and what they return
// must be self-consistent.
func FuzzDecodeRouteGet(f *testing.F) {
	f.Add(answerSeed())
	for _, q := range []RouteQuery{
		{Src: netip.MustParseAddr("100.64.2.10"), Dst: netip.MustParseAddr("198.51.100.1"), FIBMatch: true},
		{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("100.64.2.10"), IIF: 3, Mark: 7},
		{Dst: netip.MustParseAddr("2001:db8:ffff:ffff::1"), OIF: 2},
	} {
		var m Msg
		m.EncodeRouteGet(q)
		f.Add(m.Bytes()[unix.NLMSG_HDRLEN:])
	}
	for _, b := range seedBodies() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if a, ok := DecodeRouteAnswer(b); ok && (!a.Dst.IsValid() || (a.Family != 4 && a.Family != 6)) {
			t.Fatalf("answer %+v", a)
		}
		if r, ok := DecodeRuleMatch(b); ok {
			if r.Family != 4 && r.Family != 6 {
				t.Fatalf("rule %+v", r)
			}
			_ = r.Matches(Flow{Src: netip.MustParseAddr("100.64.2.10"), Dst: netip.MustParseAddr("198.51.100.1"), IIF: "lo"})
		}
	})
}
