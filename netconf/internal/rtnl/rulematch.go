package rtnl

import (
	"encoding/binary"
	"net/netip"
	"strings"

	"golang.org/x/sys/unix"
)

// RuleMatch is a rule with every selector decoded, so that a caller can
// tell which rule a route lookup went through: the kernel answers a
// lookup with the table it used, never with the rule.
type RuleMatch struct {
	Rule           // as DecodeRule describes it
	Action    int  // unix.FR_ACT_*: TO_TBL (lookup), GOTO, NOP, BLACKHOLE, UNREACHABLE, PROHIBIT
	Goto      int  // the priority a goto rule jumps to
	Invert    bool // "not": the rule applies when its selectors do not match
	Dst       netip.Prefix
	TOS       int
	IIF, OIF  string // link names; "" when not selected
	Mark      uint32 // fwmark, compared under Mask
	Mask      uint32
	UIDLo     uint32 // uid range; 0..0xffffffff when not selected
	UIDHi     uint32
	IPProto   int  // 0 when not selected
	Ports     bool // selects source or destination ports
	L3mdev    bool
	TunID     bool
	Suppress  int // suppress_prefixlength; -1 when not set
	SuppressG bool
}

// DecodeRuleMatch decodes an RTM_NEWRULE body with every selector.
func DecodeRuleMatch(m []byte) (RuleMatch, bool) {
	r, ok := DecodeRule(m)
	if !ok {
		return RuleMatch{}, false
	}
	rm := RuleMatch{Rule: r, Action: int(m[7]), TOS: int(m[3]), UIDHi: 0xffffffff, Suppress: -1}
	rm.Invert = binary.NativeEndian.Uint32(m[8:12])&unix.FIB_RULE_INVERT != 0
	dstLen := int(m[1])
	Attrs(m[sizeofFibRuleHdr:], func(t uint16, v []byte) {
		switch t {
		case unix.FRA_DST:
			if a := ipFrom(v); a.IsValid() && dstLen <= a.BitLen() {
				rm.Dst = netip.PrefixFrom(a, dstLen)
			}
		case unix.FRA_IIFNAME:
			rm.IIF = strings.TrimRight(string(v), "\x00")
		case unix.FRA_OIFNAME:
			rm.OIF = strings.TrimRight(string(v), "\x00")
		case unix.FRA_FWMARK:
			rm.Mark = u32(v)
			if rm.Mask == 0 {
				rm.Mask = 0xffffffff // a mark without a mask compares every bit
			}
		case unix.FRA_FWMASK:
			rm.Mask = u32(v)
		case unix.FRA_GOTO:
			rm.Goto = int(u32(v))
		case unix.FRA_SUPPRESS_PREFIXLEN:
			if n := u32(v); n != 0xffffffff {
				rm.Suppress = int(n)
			}
		case unix.FRA_SUPPRESS_IFGROUP:
			rm.SuppressG = u32(v) != 0xffffffff
		case unix.FRA_UID_RANGE:
			if len(v) >= 8 {
				rm.UIDLo, rm.UIDHi = binary.NativeEndian.Uint32(v[0:4]), binary.NativeEndian.Uint32(v[4:8])
			}
		case unix.FRA_IP_PROTO:
			if len(v) > 0 {
				rm.IPProto = int(v[0])
			}
		case unix.FRA_SPORT_RANGE, unix.FRA_DPORT_RANGE:
			rm.Ports = true
		case unix.FRA_L3MDEV:
			rm.L3mdev = len(v) > 0 && v[0] != 0
		case unix.FRA_TUN_ID:
			rm.TunID = true
		}
	})
	return rm, true
}

// Flow is the packet a lookup is made for, as rules see it.
type Flow struct {
	Src, Dst netip.Addr
	IIF      string // the input link's name; "lo" for a packet this host sends
	OIF      string // "" unless the socket is bound to a link
	Mark     uint32
	UID      uint32
}

// Matches reports whether the rule selects the flow, as fib_rule_match
// decides (the "not" flag included). A flow has no IP protocol or ports,
// so rules selecting those never match; tunnel ids and l3mdev neither.
func (r *RuleMatch) Matches(f Flow) bool {
	m := r.selects(f)
	if r.Invert {
		return !m
	}
	return m
}

func (r *RuleMatch) selects(f Flow) bool {
	switch {
	case r.Family != family46(familyOf(f.Dst)):
		return false
	case r.IIF != "" && r.IIF != f.IIF, r.OIF != "" && r.OIF != f.OIF:
		return false
	case (r.Mark^f.Mark)&r.Mask != 0:
		return false
	case f.UID < r.UIDLo || f.UID > r.UIDHi:
		return false
	case r.TunID, r.L3mdev, r.IPProto != 0, r.Ports, r.TOS != 0:
		return false
	case r.Src.IsValid() && !r.Src.Contains(f.Src):
		return false
	case r.Dst.IsValid() && !r.Dst.Contains(f.Dst):
		return false
	}
	return true
}

// RuleMatches calls fn for every rule of both families, in the order the
// kernel evaluates them.
func (d *Dumper) RuleMatches(fn func(RuleMatch)) error {
	hdr := make([]byte, sizeofFibRuleHdr)
	return d.dump(unix.RTM_GETRULE, hdr, unix.RTM_NEWRULE, func(m []byte) {
		if r, ok := DecodeRuleMatch(m); ok {
			fn(r)
		}
	})
}
