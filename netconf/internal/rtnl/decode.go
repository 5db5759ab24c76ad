package rtnl

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The decoders take one message body (after the netlink header) as the
// kernel sends it in a dump or a notification, and return false for
// anything they cannot use. They never panic on malformed input (fuzzed).

// DecodeLink decodes an RTM_NEWLINK body.
func DecodeLink(m []byte) (Link, bool) {
	if len(m) < unix.SizeofIfInfomsg {
		return Link{}, false
	}
	li := Link{Index: int(int32(binary.NativeEndian.Uint32(m[4:8])))}
	li.Up = binary.NativeEndian.Uint32(m[8:12])&unix.IFF_UP != 0
	Attrs(m[unix.SizeofIfInfomsg:], func(t uint16, v []byte) {
		switch t {
		case unix.IFLA_IFNAME:
			li.Name = strings.TrimRight(string(v), "\x00")
		case unix.IFLA_ADDRESS:
			li.MAC = macString(v)
		case unix.IFLA_MTU:
			li.MTU = int(u32(v))
		case unix.IFLA_PROP_LIST:
			Attrs(v, func(t uint16, v []byte) {
				if t == unix.IFLA_ALT_IFNAME {
					li.AltNames = append(li.AltNames, strings.TrimRight(string(v), "\x00"))
				}
			})
		case unix.IFLA_AF_SPEC:
			li.AcceptRA = acceptRA(v)
		}
	})
	return li, true
}

// devconfAcceptRA is accept_ra's index in IFLA_INET6_CONF, the IPv6
// devconf array of s32 (DEVCONF_ACCEPT_RA in linux/ipv6.h: forwarding,
// hop_limit, mtu6, accept_ra).
const devconfAcceptRA = 3

// acceptRA reads accept_ra from a link's IFLA_AF_SPEC: AF_INET6 →
// IFLA_INET6_CONF → devconf[DEVCONF_ACCEPT_RA].
func acceptRA(spec []byte) bool {
	on := false
	Attrs(spec, func(family uint16, v []byte) {
		if family != unix.AF_INET6 {
			return
		}
		Attrs(v, func(t uint16, conf []byte) {
			if t == unix.IFLA_INET6_CONF && len(conf) >= 4*(devconfAcceptRA+1) {
				on = int32(binary.NativeEndian.Uint32(conf[4*devconfAcceptRA:])) != 0
			}
		})
	})
	return on
}

func macString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	const hexdigits = "0123456789abcdef"
	buf := make([]byte, 0, len(b)*3)
	for i, c := range b {
		if i > 0 {
			buf = append(buf, ':')
		}
		buf = append(buf, hexdigits[c>>4], hexdigits[c&0xf])
	}
	return string(buf)
}

// DecodeAddr decodes an RTM_NEWADDR body.
func DecodeAddr(m []byte) (Addr, bool) {
	if len(m) < unix.SizeofIfAddrmsg {
		return Addr{}, false
	}
	plen := int(m[1])
	a := Addr{Flags: uint32(m[2]), Index: int(binary.NativeEndian.Uint32(m[4:8]))}
	var local, address netip.Addr
	Attrs(m[unix.SizeofIfAddrmsg:], func(t uint16, v []byte) {
		switch t {
		case unix.IFA_LOCAL:
			local = ipFrom(v)
		case unix.IFA_ADDRESS:
			address = ipFrom(v)
		case unix.IFA_FLAGS:
			if len(v) >= 4 {
				a.Flags = binary.NativeEndian.Uint32(v)
			}
		case IFAProto:
			if len(v) > 0 {
				a.Proto = v[0]
			}
		}
	})
	// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
	// point-to-point links and the same address otherwise.
	ip := local
	if !ip.IsValid() {
		ip = address
	}
	if !ip.IsValid() || plen > ip.BitLen() {
		return Addr{}, false
	}
	a.Prefix = netip.PrefixFrom(ip, plen)
	return a, true
}

// DecodeRoute decodes an RTM_NEWROUTE body of a dump; cached clones are
// skipped. The attributes are read as for a lookup's answer (one decoder
// for both), the preferred source becoming Src.
func DecodeRoute(m []byte) (Route, bool) {
	if len(m) < unix.SizeofRtMsg || binary.NativeEndian.Uint32(m[8:12])&unix.RTM_F_CLONED != 0 {
		return Route{}, false
	}
	a, ok := DecodeRouteAnswer(m)
	if !ok {
		return Route{}, false
	}
	return Route{
		Family: a.Family, Table: a.Table, Type: a.Type, Scope: a.Scope, Proto: a.Proto,
		Metric: a.Metric, TOS: int(m[3]), OIF: a.OIF, Dst: a.Dst, Gw: a.Gw, Src: a.PrefSrc,
		Multipath: a.Multipath,
	}, true
}

const sizeofFibRuleHdr = 12

// DecodeRule decodes an RTM_NEWRULE body. Selectors other than the
// source are described in Selectors (and make the rule not Simple).
func DecodeRule(m []byte) (Rule, bool) {
	if len(m) < sizeofFibRuleHdr {
		return Rule{}, false
	}
	r := Rule{Family: family46(m[0]), Table: int(m[4]), Simple: true}
	if r.Family == 0 {
		return Rule{}, false
	}
	dstLen, srcLen, tos, action := int(m[1]), int(m[2]), int(m[3]), int(m[7])
	flags := binary.NativeEndian.Uint32(m[8:12])
	var sel []string
	if flags&unix.FIB_RULE_INVERT != 0 {
		sel = append(sel, "not")
	}
	if tos != 0 {
		sel = append(sel, "tos "+strconv.Itoa(tos))
	}
	if action != unix.FR_ACT_TO_TBL {
		sel = append(sel, "action "+strconv.Itoa(action))
	}
	var mark, mask uint32
	var hasMark bool
	Attrs(m[sizeofFibRuleHdr:], func(t uint16, v []byte) {
		switch t {
		case unix.FRA_SRC:
			if a := ipFrom(v); a.IsValid() && srcLen <= a.BitLen() {
				r.Src = netip.PrefixFrom(a, srcLen)
			}
		case unix.FRA_PRIORITY:
			r.Priority = int(u32(v))
		case unix.FRA_TABLE:
			r.Table = int(u32(v))
		case unix.FRA_PROTOCOL:
			if len(v) > 0 {
				r.Proto = int(v[0])
			}
		case unix.FRA_FWMARK:
			mark, hasMark = u32(v), true
		case unix.FRA_FWMASK:
			mask, hasMark = u32(v), true
		default:
			if s := ruleSelector(t, v, dstLen); s != "" {
				sel = append(sel, s)
			}
		}
	})
	if hasMark {
		sel = append(sel, fmt.Sprintf("fwmark 0x%x/0x%x", mark, mask))
	}
	if len(sel) > 0 {
		r.Simple = false
		r.Selectors = strings.Join(sel, " ")
	}
	return r, true
}

// ruleSelector describes the rule attributes that are selectors or
// actions ec2net never sets, iproute2-like; "" for the others.
func ruleSelector(t uint16, v []byte, dstLen int) string {
	switch t {
	case unix.FRA_DST:
		if a := ipFrom(v); a.IsValid() && dstLen <= a.BitLen() {
			return "to " + netip.PrefixFrom(a, dstLen).String()
		}
		return "to ?"
	case unix.FRA_IIFNAME:
		return "iif " + strings.TrimRight(string(v), "\x00")
	case unix.FRA_OIFNAME:
		return "oif " + strings.TrimRight(string(v), "\x00")
	case unix.FRA_GOTO:
		return "goto " + strconv.Itoa(int(u32(v)))
	case unix.FRA_SUPPRESS_PREFIXLEN:
		if u32(v) != 0xffffffff {
			return "suppress_prefixlength " + strconv.Itoa(int(u32(v)))
		}
	case unix.FRA_SUPPRESS_IFGROUP:
		if u32(v) != 0xffffffff {
			return "suppress_ifgroup " + strconv.Itoa(int(u32(v)))
		}
	case unix.FRA_L3MDEV:
		if len(v) > 0 && v[0] != 0 {
			return "l3mdev"
		}
	case unix.FRA_TUN_ID:
		return "tun_id"
	case unix.FRA_UID_RANGE:
		if len(v) >= 8 {
			lo, hi := binary.NativeEndian.Uint32(v[0:4]), binary.NativeEndian.Uint32(v[4:8])
			if lo != 0 || hi != 0xffffffff {
				return fmt.Sprintf("uidrange %d-%d", lo, hi)
			}
		}
	case unix.FRA_IP_PROTO:
		if len(v) > 0 {
			return "ipproto " + strconv.Itoa(int(v[0]))
		}
	case unix.FRA_SPORT_RANGE:
		return "sport"
	case unix.FRA_DPORT_RANGE:
		return "dport"
	case unix.FRA_FLOW:
		return "realms"
	}
	return ""
}
