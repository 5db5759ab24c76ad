package netconf

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"github.com/ec2net/ec2net/netconf/plan"
	"golang.org/x/sys/unix"
)

// What the kernel lacks of a configured ENI's wanted state. A foreign
// object identical to a wanted one counts as satisfied: nothing is ever
// deleted and re-added to change its owner or flags.

func (p *pass) missingLink(e *plan.ENI) {
	l := e.Link
	set := func(s LinkSetting, op Op) {
		s.Index = l.Index
		p.add(Change{Op: op, Kind: KindLink, MAC: e.MAC, Link: l.Name, LinkSet: s})
	}
	re := p.owned.ENIs[e.MAC]
	if re != nil && re.BroughtUp == broughtUpAnyLink && l.Up {
		re.BroughtUp = broughtUp(l.Index) // an older record's "true", now for this link
	}
	if e.Up && !l.Up {
		if re != nil && (re.BroughtUp == broughtUp(l.Index) || re.BroughtUp == broughtUpAnyLink) {
			// ec2net brought it up before: someone set it down since.
			p.result(e.MAC).AdminDown = true
		} else {
			set(LinkSetting{Up: true}, OpSet)
		}
	}
	if e.NoRA && p.have.acceptsRA(l.Index) {
		set(LinkSetting{NoRA: true}, OpSet)
	}
	if e.MTU != 0 && l.MTU != e.MTU {
		set(LinkSetting{MTU: e.MTU}, OpSet)
	}
	for _, n := range e.AltNames {
		if n != l.Name && !slices.Contains(l.AltNames, n) {
			set(LinkSetting{AltName: n}, OpAdd)
		}
	}
}

func (p *pass) missingAddrs(e *plan.ENI) {
	have := p.have.addrsOn(e.Link.Index)
	for _, a := range e.Addrs {
		var flags uint32
		if a.NoPrefixRoute {
			flags |= unix.IFA_F_NOPREFIXROUTE
		}
		if a.NoDAD {
			flags |= unix.IFA_F_NODAD
		}
		// Present in any form (a DHCP client's, other flags, other
		// length) counts as satisfied.
		if k := have[a.Prefix.Addr()]; k != nil {
			if p.adoptable[e.MAC] && exactly(k, a.Prefix, flags) {
				// The record is gone and the kernel keeps no marks: an
				// address exactly as ec2net makes them, which IMDS
				// assigns to this ENI, is taken as ec2net's (documented),
				// so that its unassignment is not missed for ever.
				re := p.owned.eni(e.MAC)
				re.Addrs = addSorted(re.Addrs, a.Prefix.Addr().String())
			}
			continue
		}
		p.add(Change{Op: OpAdd, Kind: KindAddr, MAC: e.MAC, Link: e.Link.Name, Dev: e.Link.Name,
			Addr: rtnl.Addr{Index: e.Link.Index, Prefix: a.Prefix, Flags: flags, Proto: p.addrProto}})
	}
}

// exactly reports whether a kernel address is one ec2net would have made:
// the planned length and flags, permanent (no DHCP lease).
func exactly(k *rtnl.Addr, want netip.Prefix, flags uint32) bool {
	return k.Prefix == want && k.Flags&flags == flags && k.Flags&unix.IFA_F_PERMANENT != 0
}

// wantedRoute is a planned route as ec2net writes it.
func wantedRoute(rt plan.Route) rtnl.Route {
	r := rtnl.Route{Family: 4, Table: rt.Table, Proto: Protocol, Scope: int(rt.Scope), Type: unix.RTN_UNICAST,
		OIF: rt.LinkIndex, Dst: rt.Dst, Gw: rt.Gw, Src: rt.Src}
	if rt.Type == plan.Local {
		r.Type = unix.RTN_LOCAL
	}
	if rt.Dst.Addr().Is6() {
		r.Family = 6
		r.Scope = unix.RT_SCOPE_UNIVERSE // IPv6 has no route scopes
		r.Metric = 1024                  // what the kernel gives IPv6 routes without one
	}
	return r
}

// sameKey reports whether two routes have the same identity in the
// kernel: both cannot exist at once (NLM_F_EXCL fails), whatever their
// next hop.
func sameKey(a, b *rtnl.Route) bool {
	return a.Table == b.Table && a.Dst == b.Dst && a.Metric == b.Metric && a.TOS == b.TOS
}

// sameRoute reports whether a kernel route does what a wanted one does.
func sameRoute(k, w *rtnl.Route) bool {
	if k.Multipath || k.Gw != w.Gw || k.Src != w.Src || k.OIF != w.OIF || k.Type != w.Type {
		return false
	}
	return k.Family == 6 || k.Scope == w.Scope
}

func (p *pass) missingRoutes(e *plan.ENI) {
	if p.result(e.MAC).AdminDown {
		// The kernel refuses routes through a link that is down (and
		// drops its IPv4 routes): they come back with the link.
		for i := range p.have.routes {
			if kr := &p.have.routes[i]; kr.OIF == e.Link.Index && kr.Proto == Protocol {
				kr.consumed = true
			}
		}
		return
	}
	for _, rt := range e.Routes {
		want := wantedRoute(rt)
		var same, owned, foreign *kRoute
		for i := range p.have.routes {
			kr := &p.have.routes[i]
			if kr.consumed || !sameKey(&kr.Route, &want) {
				continue
			}
			if sameRoute(&kr.Route, &want) {
				same = kr
				break
			}
			if kr.Proto == Protocol {
				owned = kr
			} else {
				foreign = kr
			}
		}
		// The metric is the kernel's default: not part of what is written.
		write := want
		write.Metric = 0
		c := Change{Op: OpAdd, Kind: KindRoute, MAC: e.MAC, Link: e.Link.Name, Dev: rt.Dev, Route: write}
		switch {
		case same != nil:
			same.consumed = true
		case owned != nil:
			owned.consumed = true
			c.Op = OpSet
			p.add(c)
		case foreign != nil:
			p.fail(c, fmt.Errorf("%w: %s", ErrForeignInTheWay, routeText("", foreign.Route, p.have.devName(foreign.OIF))))
		default:
			p.add(c)
		}
	}
}

func (p *pass) missingRules(e *plan.ENI) {
	for _, ru := range e.Rules {
		r := rtnl.Rule{Family: ru.Family(), Priority: ru.Priority, Table: ru.Table, Src: ru.Src, Proto: Protocol, Simple: true}
		if p.rules.consume(p.have, r) {
			continue
		}
		p.add(Change{Op: OpAdd, Kind: KindRule, MAC: e.MAC, Link: e.Link.Name, Rule: r})
	}
}

// ruleKey is what makes a simple rule equal to a wanted one. Plain bytes
// rather than netip.Prefix so that the map hashes memory, not a structure
// with a pointer in it: thousands of rules go through it per pass.
type ruleKey struct {
	src         [16]byte
	bits        uint8
	family      uint8
	prio, table int32
}

func makeRuleKey(r *rtnl.Rule) ruleKey {
	k := ruleKey{family: uint8(r.Family), prio: int32(r.Priority), table: int32(r.Table), bits: 255}
	if r.Src.IsValid() {
		k.src = r.Src.Addr().As16()
		k.bits = uint8(r.Src.Bits())
	}
	return k
}

// ruleIndex maps a rule key to the first kernel rule with it; next chains
// duplicates. Built on first use.
type ruleIndex struct {
	first map[ruleKey]int
	next  []int
}

// consume marks an unconsumed simple kernel rule equal to r (whoever's it
// is) as matched, reporting whether there was one.
func (ix *ruleIndex) consume(h *have, r rtnl.Rule) bool {
	if ix.first == nil {
		ix.first = make(map[ruleKey]int, len(h.rules))
		ix.next = make([]int, len(h.rules))
		for i := len(h.rules) - 1; i >= 0; i-- {
			kr := &h.rules[i]
			ix.next[i] = -1
			if !kr.Simple {
				continue
			}
			key := makeRuleKey(&kr.Rule)
			if j, ok := ix.first[key]; ok {
				ix.next[i] = j
			}
			ix.first[key] = i
		}
	}
	i, ok := ix.first[makeRuleKey(&r)]
	for ok && i >= 0 {
		if kr := &h.rules[i]; !kr.consumed {
			kr.consumed = true
			return true
		}
		i = ix.next[i]
	}
	return false
}
