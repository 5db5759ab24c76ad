package rtnl

import (
	"golang.org/x/sys/unix"
)

// IFAProto is the IFA_PROTO address attribute (linux/if_addr.h, 5.18):
// an originator tag on addresses, as rtm_protocol is on routes.
const IFAProto = 11

// EncodeLinkUp sets IFF_UP on a link.
func (m *Msg) EncodeLinkUp(index int) {
	m.begin(unix.RTM_NEWLINK, 0)
	m.raw(unix.AF_UNSPEC, 0, 0, 0)
	m.u32raw(uint32(index))
	m.u32raw(unix.IFF_UP) // flags
	m.u32raw(unix.IFF_UP) // change mask
	m.end()
}

// EncodeLinkMTU sets a link's MTU.
func (m *Msg) EncodeLinkMTU(index, mtu int) {
	m.begin(unix.RTM_SETLINK, 0)
	m.raw(unix.AF_UNSPEC, 0, 0, 0)
	m.u32raw(uint32(index))
	m.u32raw(0)
	m.u32raw(0)
	m.attrU32(unix.IFLA_MTU, uint32(mtu))
	m.end()
}

// EncodeAltName adds an alternative name to a link.
func (m *Msg) EncodeAltName(index int, name string) {
	m.begin(unix.RTM_NEWLINKPROP, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	m.raw(unix.AF_UNSPEC, 0, 0, 0)
	m.u32raw(uint32(index))
	m.u32raw(0)
	m.u32raw(0)
	var inner Msg
	inner.attr(unix.IFLA_ALT_IFNAME, append([]byte(name), 0))
	m.attr(unix.IFLA_PROP_LIST|unix.NLA_F_NESTED, inner.b)
	m.end()
}

// EncodeAddr adds (op Add) or deletes (op Del) an address. Flags above
// the 8 bits of ifa_flags go in IFA_FLAGS; Proto, when not 0, in
// IFA_PROTO (a kernel before 5.18 rejects the attribute).
func (m *Msg) EncodeAddr(op Op, a Addr) {
	if op == Del {
		m.begin(unix.RTM_DELADDR, 0)
	} else {
		m.begin(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	}
	p := a.Prefix
	m.raw(familyOf(p.Addr()), byte(p.Bits()), byte(a.Flags&0xff), unix.RT_SCOPE_UNIVERSE)
	m.u32raw(uint32(a.Index))
	m.attrAddr(unix.IFA_LOCAL, p.Addr())
	m.attrAddr(unix.IFA_ADDRESS, p.Addr())
	if op != Del && a.Flags > 0xff {
		m.attrU32(unix.IFA_FLAGS, a.Flags)
	}
	if op != Del && a.Proto != 0 {
		m.attr(IFAProto, []byte{a.Proto})
	}
	m.end()
}

// EncodeRoute adds, replaces or deletes a route. A deletion carries the
// protocol, table, type, scope and metric given, so the kernel deletes
// only a route matching them all.
func (m *Msg) EncodeRoute(op Op, r Route) {
	switch op {
	case Add:
		m.begin(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	case Replace:
		m.begin(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	default:
		m.begin(unix.RTM_DELROUTE, 0)
	}
	table := byte(unix.RT_TABLE_UNSPEC)
	if r.Table < 256 {
		table = byte(r.Table)
	}
	m.raw(familyOf(r.Dst.Addr()), byte(r.Dst.Bits()), 0, byte(r.TOS), table, byte(r.Proto), byte(r.Scope), byte(r.Type))
	m.u32raw(0)
	m.attrU32(unix.RTA_TABLE, uint32(r.Table))
	if r.Dst.Bits() > 0 {
		m.attrAddr(unix.RTA_DST, r.Dst.Addr())
	}
	if r.Gw.IsValid() {
		m.attrAddr(unix.RTA_GATEWAY, r.Gw)
	}
	if r.Src.IsValid() && op != Del {
		m.attrAddr(unix.RTA_PREFSRC, r.Src)
	}
	if r.OIF > 0 {
		m.attrU32(unix.RTA_OIF, uint32(r.OIF))
	}
	if r.Metric > 0 {
		m.attrU32(unix.RTA_PRIORITY, uint32(r.Metric))
	}
	m.end()
}

// EncodeRule adds or deletes a "from <Src> lookup <Table> pref
// <Priority>" rule. A non-zero Proto is part of a deletion too: the kernel
// then deletes only a rule carrying it, never a foreign twin.
func (m *Msg) EncodeRule(op Op, r Rule) {
	if op == Del {
		m.begin(unix.RTM_DELRULE, 0)
	} else {
		m.begin(unix.RTM_NEWRULE, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	}
	f := byte(unix.AF_INET)
	if r.Family == 6 {
		f = unix.AF_INET6
	}
	srcLen := byte(0)
	if r.Src.IsValid() {
		srcLen = byte(r.Src.Bits())
	}
	t := byte(unix.RT_TABLE_UNSPEC)
	if r.Table < 256 {
		t = byte(r.Table)
	}
	m.raw(f, 0, srcLen, 0, t, 0, 0, unix.FR_ACT_TO_TBL)
	m.u32raw(0)
	m.attrU32(unix.FRA_PRIORITY, uint32(r.Priority))
	m.attrU32(unix.FRA_TABLE, uint32(r.Table))
	if r.Src.IsValid() {
		m.attrAddr(unix.FRA_SRC, r.Src.Addr())
	}
	if r.Proto != 0 {
		m.attr(unix.FRA_PROTOCOL, []byte{byte(r.Proto)})
	}
	m.end()
}
