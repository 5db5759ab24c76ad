package rtnl

import (
	"net/netip"
	"testing"
)

// Rule selection as the kernel's fib_rule_match decides it, for the
// selectors status has to reason about.
func TestRuleMatches(t *testing.T) {
	src, dst := netip.MustParseAddr("100.64.2.10"), netip.MustParseAddr("198.51.100.1")
	out := Flow{Src: src, Dst: dst, IIF: "lo"}
	in := Flow{Src: dst, Dst: src, IIF: "eth1"}
	all := RuleMatch{Rule: Rule{Family: 4}, UIDHi: 0xffffffff, Suppress: -1}
	with := func(f func(r *RuleMatch)) RuleMatch { r := all; f(&r); return r }
	cases := []struct {
		name string
		rule RuleMatch
		flow Flow
		want bool
	}{
		{"from all", all, out, true},
		{"other family", with(func(r *RuleMatch) { r.Family = 6 }), out, false},
		{"from the address", with(func(r *RuleMatch) { r.Src = netip.PrefixFrom(src, 32) }), out, true},
		{"from another", with(func(r *RuleMatch) { r.Src = netip.MustParsePrefix("100.64.2.11/32") }), out, false},
		{"from its subnet", with(func(r *RuleMatch) { r.Src = netip.MustParsePrefix("100.64.0.0/10") }), out, true},
		{"to elsewhere", with(func(r *RuleMatch) { r.Dst = netip.MustParsePrefix("100.64.9.0/24") }), out, false},
		{"not to elsewhere", with(func(r *RuleMatch) { r.Dst = netip.MustParsePrefix("100.64.9.0/24"); r.Invert = true }), out, true},
		{"iif lo: sent by the host", with(func(r *RuleMatch) { r.IIF = "lo" }), out, true},
		{"iif lo: arriving", with(func(r *RuleMatch) { r.IIF = "lo" }), in, false},
		{"iif eth1: arriving", with(func(r *RuleMatch) { r.IIF = "eth1" }), in, true},
		{"oif bound", with(func(r *RuleMatch) { r.OIF = "eth0" }), out, false},
		{"fwmark 0x80", with(func(r *RuleMatch) { r.Mark, r.Mask = 0x80, 0xffffffff }), out, false},
		{"not fwmark 0xca6c (wg-quick)", with(func(r *RuleMatch) { r.Mark, r.Mask, r.Invert = 0xca6c, 0xffffffff, true }), out, true},
		{"uid range without root", with(func(r *RuleMatch) { r.UIDLo, r.UIDHi = 1000, 2000 }), out, false},
		{"ipproto tcp", with(func(r *RuleMatch) { r.IPProto = 6 }), out, false},
	}
	for _, c := range cases {
		if got := c.rule.Matches(c.flow); got != c.want {
			t.Errorf("%s: Matches = %v, want %v", c.name, got, c.want)
		}
	}
}
