package netconf

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/ec2net/ec2net/netconf/plan"
	"golang.org/x/sys/unix"
)

// The texts below are close to iproute2's syntax so that `ec2net plan`
// reads like the commands an administrator would have typed.

func famFlag(a netip.Addr) string {
	if a.Is4() {
		return "ip -4 "
	}
	return "ip -6 "
}

// addrOrPrefix prints a host prefix as a bare address, as `ip rule` does.
func addrOrPrefix(p netip.Prefix) string {
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

func addrText(verb string, p netip.Prefix, dev string, noPrefixRoute, noDAD bool) string {
	var b strings.Builder
	b.WriteString(famFlag(p.Addr()))
	b.WriteString("addr ")
	b.WriteString(verb)
	b.WriteByte(' ')
	b.WriteString(p.String())
	b.WriteString(" dev ")
	b.WriteString(dev)
	if noPrefixRoute {
		b.WriteString(" noprefixroute")
	}
	if noDAD {
		b.WriteString(" nodad")
	}
	return b.String()
}

func tableName(t int) string {
	switch t {
	case unix.RT_TABLE_LOCAL:
		return "local"
	case unix.RT_TABLE_MAIN:
		return "main"
	}
	return strconv.Itoa(t)
}

func protoName(p int) string {
	switch p {
	case Protocol:
		return strconv.Itoa(Protocol)
	case unix.RTPROT_KERNEL:
		return "kernel"
	case unix.RTPROT_BOOT:
		return "boot"
	case unix.RTPROT_STATIC:
		return "static"
	case unix.RTPROT_RA:
		return "ra"
	case unix.RTPROT_DHCP:
		return "dhcp"
	case 0:
		return "unspec"
	}
	return strconv.Itoa(p)
}

func scopeName(s int) string {
	switch s {
	case unix.RT_SCOPE_LINK:
		return "link"
	case unix.RT_SCOPE_HOST:
		return "host"
	case unix.RT_SCOPE_UNIVERSE:
		return "global"
	}
	return strconv.Itoa(s)
}

type routeFields struct {
	local  bool
	table  int
	dst    netip.Prefix
	gw     netip.Addr
	src    netip.Addr
	scope  int
	dev    string
	proto  int
	metric int
}

func routeText(verb string, f routeFields) string {
	var b strings.Builder
	b.WriteString(famFlag(f.dst.Addr()))
	b.WriteString("route ")
	b.WriteString(verb)
	b.WriteByte(' ')
	if f.local {
		b.WriteString("local ")
	}
	if f.dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(addrOrPrefix(f.dst))
	}
	if f.gw.IsValid() {
		b.WriteString(" via ")
		b.WriteString(f.gw.String())
	}
	if f.dev != "" {
		b.WriteString(" dev ")
		b.WriteString(f.dev)
	}
	b.WriteString(" table ")
	b.WriteString(tableName(f.table))
	b.WriteString(" proto ")
	b.WriteString(protoName(f.proto))
	if f.dst.Addr().Is4() && f.scope != unix.RT_SCOPE_UNIVERSE && !f.local {
		b.WriteString(" scope ")
		b.WriteString(scopeName(f.scope))
	}
	if f.src.IsValid() {
		b.WriteString(" src ")
		b.WriteString(f.src.String())
	}
	if f.metric != 0 && f.dst.Addr().Is4() {
		b.WriteString(" metric ")
		b.WriteString(strconv.Itoa(f.metric))
	}
	return b.String()
}

func ruleText(verb string, family, prio int, src netip.Prefix, table, proto int) string {
	var b strings.Builder
	if family == 6 {
		b.WriteString("ip -6 rule ")
	} else {
		b.WriteString("ip -4 rule ")
	}
	b.WriteString(verb)
	b.WriteString(" from ")
	if src.IsValid() {
		b.WriteString(addrOrPrefix(src))
	} else {
		b.WriteString("all")
	}
	b.WriteString(" lookup ")
	b.WriteString(tableName(table))
	b.WriteString(" pref ")
	b.WriteString(strconv.Itoa(prio))
	b.WriteString(" proto ")
	b.WriteString(protoName(proto))
	return b.String()
}

func desiredRouteFields(r plan.Route) routeFields {
	return routeFields{local: r.Type == plan.Local, table: r.Table, dst: r.Dst, gw: r.Gw, src: r.Src,
		scope: int(r.Scope), dev: r.Dev, proto: Protocol}
}

func (k *kernel) devName(index int) string {
	if l := k.byIndex[index]; l != nil {
		return l.Name
	}
	if index == 0 {
		return ""
	}
	return "if" + strconv.Itoa(index)
}

func (k *kernel) kRouteFields(kr *kRoute) routeFields {
	return routeFields{local: kr.typ == unix.RTN_LOCAL, table: kr.table, dst: kr.dst, gw: kr.gw, src: kr.src,
		scope: kr.scope, dev: k.devName(kr.oif), proto: kr.proto, metric: kr.metric}
}

// foreignRuleText describes a foreign rule in full, selectors included.
func foreignRuleText(kr *kRule) string {
	s := ruleText("", kr.family, kr.prio, kr.src, kr.table, kr.proto)
	s = strings.Replace(s, "rule  from", "rule from", 1)
	if kr.selectors != "" {
		s += " " + kr.selectors
	}
	return s
}
