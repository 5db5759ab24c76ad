package rtnl

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// seedBodies are real message bodies (without the netlink header), as
// the encoders write them: the decoders read the same layouts.
func seedBodies() [][]byte {
	var out [][]byte
	body := func(enc func(m *Msg)) {
		var m Msg
		enc(&m)
		out = append(out, m.Bytes()[unix.NLMSG_HDRLEN:])
	}
	body(func(m *Msg) { m.EncodeLinkMTU(3, 9001) })
	body(func(m *Msg) { m.EncodeAltName(3, "eni-0123") })
	body(func(m *Msg) {
		m.EncodeAddr(Add, Addr{Index: 3, Prefix: netip.MustParsePrefix("2001:db8::10/128"), Flags: unix.IFA_F_NODAD | unix.IFA_F_NOPREFIXROUTE, Proto: 236})
	})
	body(func(m *Msg) {
		m.EncodeRoute(Add, Route{Table: 10001, Proto: 236, Type: unix.RTN_UNICAST, OIF: 3, Metric: 5,
			Dst: netip.MustParsePrefix("100.64.2.0/24"), Gw: netip.MustParseAddr("100.64.2.1"), Src: netip.MustParseAddr("100.64.2.10")})
	})
	body(func(m *Msg) {
		m.EncodeRule(Add, Rule{Family: 6, Priority: 10001, Table: 10001, Proto: 236, Src: netip.MustParsePrefix("2001:db8::/80")})
	})
	return out
}

// FuzzDecode feeds arbitrary bytes to every decoder: none may panic, and
// whatever they return must be self-consistent.
func FuzzDecode(f *testing.F) {
	for _, b := range seedBodies() {
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{4, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		Attrs(b, func(typ uint16, val []byte) {
			if len(val) > len(b) {
				t.Fatalf("attribute longer than its input")
			}
		})
		if l, ok := DecodeLink(b); ok && len(l.MAC) != 0 && len(l.MAC)%3 != 2 {
			t.Fatalf("MAC %q", l.MAC)
		}
		if a, ok := DecodeAddr(b); ok && !a.Prefix.IsValid() {
			t.Fatalf("address %+v with an invalid prefix", a)
		}
		if r, ok := DecodeRoute(b); ok && (!r.Dst.IsValid() || (r.Family != 4 && r.Family != 6)) {
			t.Fatalf("route %+v", r)
		}
		if r, ok := DecodeRule(b); ok && r.Family != 4 && r.Family != 6 {
			t.Fatalf("rule %+v", r)
		}
		extAckMsg(unix.NLM_F_ACK_TLVS, b)
	})
}
