package netconf

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"golang.org/x/sys/unix"
)

// The one place that turns objects into the text users see: close to
// iproute2's syntax, so that `ec2net plan` reads like the commands an
// administrator would have typed. A verb of "" describes the object
// ("ip -4 rule from ... lookup ..."), as foreign objects are listed.

// Text is the change as an iproute2-like command, without its sign.
func (c Change) Text() string {
	verb := c.Op.String()
	switch c.Kind {
	case KindLink:
		s := c.LinkSet
		switch {
		case s.Up:
			return "ip link set dev " + c.Link + " up"
		case s.MTU != 0:
			return "ip link set dev " + c.Link + " mtu " + strconv.Itoa(s.MTU)
		case s.AltName != "":
			return "ip link property add dev " + c.Link + " altname " + s.AltName
		case s.NoRA:
			return "sysctl net.ipv6.conf." + strings.ReplaceAll(c.Link, ".", "/") + ".accept_ra=0"
		}
		return "ip link show address " + c.MAC
	case KindAddr:
		return addrText(verb, c.Addr, c.Dev)
	case KindRoute:
		if c.Op == OpSet {
			verb = "replace"
		}
		return routeText(verb, c.Route, c.Dev)
	case KindRule:
		return ruleText(verb, c.Rule)
	}
	return "?"
}

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

func withVerb(b *strings.Builder, what, verb string) {
	b.WriteString(what)
	if verb != "" {
		b.WriteByte(' ')
		b.WriteString(verb)
	}
}

func addrText(verb string, a rtnl.Addr, dev string) string {
	var b strings.Builder
	b.WriteString(famFlag(a.Prefix.Addr()))
	withVerb(&b, "addr", verb)
	b.WriteByte(' ')
	b.WriteString(a.Prefix.String())
	b.WriteString(" dev ")
	b.WriteString(dev)
	if verb != "del" {
		if a.Flags&unix.IFA_F_NOPREFIXROUTE != 0 {
			b.WriteString(" noprefixroute")
		}
		if a.Flags&unix.IFA_F_NODAD != 0 {
			b.WriteString(" nodad")
		}
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

func routeText(verb string, r rtnl.Route, dev string) string {
	var b strings.Builder
	b.WriteString(famFlag(r.Dst.Addr()))
	withVerb(&b, "route", verb)
	b.WriteByte(' ')
	local := r.Type == unix.RTN_LOCAL
	if local {
		b.WriteString("local ")
	}
	if r.Dst.Bits() == 0 {
		b.WriteString("default")
	} else {
		b.WriteString(addrOrPrefix(r.Dst))
	}
	if r.Gw.IsValid() {
		b.WriteString(" via ")
		b.WriteString(r.Gw.String())
	}
	if dev != "" {
		b.WriteString(" dev ")
		b.WriteString(dev)
	}
	b.WriteString(" table ")
	b.WriteString(tableName(r.Table))
	b.WriteString(" proto ")
	b.WriteString(protoName(r.Proto))
	if r.Dst.Addr().Is4() && r.Scope != unix.RT_SCOPE_UNIVERSE && !local {
		b.WriteString(" scope ")
		b.WriteString(scopeName(r.Scope))
	}
	if r.Src.IsValid() {
		b.WriteString(" src ")
		b.WriteString(r.Src.String())
	}
	if r.Metric != 0 && r.Dst.Addr().Is4() {
		b.WriteString(" metric ")
		b.WriteString(strconv.Itoa(r.Metric))
	}
	return b.String()
}

// ruleText prints a rule, its other selectors included (foreign rules).
func ruleText(verb string, r rtnl.Rule) string {
	var b strings.Builder
	if r.Family == 6 {
		b.WriteString("ip -6 ")
	} else {
		b.WriteString("ip -4 ")
	}
	withVerb(&b, "rule", verb)
	b.WriteString(" from ")
	if r.Src.IsValid() {
		b.WriteString(addrOrPrefix(r.Src))
	} else {
		b.WriteString("all")
	}
	b.WriteString(" lookup ")
	b.WriteString(tableName(r.Table))
	b.WriteString(" pref ")
	b.WriteString(strconv.Itoa(r.Priority))
	b.WriteString(" proto ")
	b.WriteString(protoName(r.Proto))
	if r.Selectors != "" {
		b.WriteByte(' ')
		b.WriteString(r.Selectors)
	}
	return b.String()
}
