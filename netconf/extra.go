package netconf

import (
	"net/netip"
	"sort"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"github.com/ec2net/ec2net/netconf/plan"
)

// What ec2net owns and no longer wants: owned rules and routes (Protocol)
// and recorded addresses that no wanted object consumed, removed only when
// their ENI's removal is allowed in this pass.

// removable reports whether owned objects attributed to mac that are not
// wanted may be deleted in this pass.
func (p *pass) removable(mac string) bool {
	switch {
	case p.kind == passCleanup:
		return true
	case mac == "":
		// No ENI claims it (a lost record): it could be a held ENI's whose
		// table is not recorded.
		return !p.ambiguous
	case p.have.link(mac) == nil:
		// Its link is gone (detached): the kernel already dropped the
		// link's addresses and IPv4 routes; the rules and any remaining
		// routes are orphans whatever IMDS still says (it can list a
		// detached ENI for a while). That is kernel evidence, not IMDS.
		return true
	}
	if e := p.wantByMAC[mac]; e != nil {
		return e.Disposition == plan.Configure || e.Disposition == plan.Exclude
	}
	// Not in the snapshot but its link exists: keep it configured until
	// the link goes (removal needs positive evidence).
	return false
}

func (p *pass) extraRules() {
	for i := range p.have.rules {
		kr := &p.have.rules[i]
		if kr.consumed || kr.Proto != Protocol {
			continue
		}
		mac := p.tableOwner[kr.Table]
		if p.removable(mac) {
			p.add(Change{Op: OpDel, Kind: KindRule, MAC: mac, Link: p.linkName(mac), Rule: kr.Rule})
		}
	}
}

func (p *pass) extraRoutes() {
	for i := range p.have.routes {
		kr := &p.have.routes[i]
		if kr.consumed || kr.Proto != Protocol {
			continue
		}
		mac := p.tableOwner[kr.Table]
		if kr.Table == tableLocal {
			mac = p.localOwner[kr.Dst]
		}
		if !p.removable(mac) {
			continue
		}
		// The kernel deletes only the route that matches the protocol,
		// table, type, scope and metric given.
		del := kr.Route
		del.Src = netip.Addr{}
		if del.Multipath {
			del.OIF, del.Gw = 0, netip.Addr{}
		}
		p.add(Change{Op: OpDel, Kind: KindRoute, MAC: mac, Link: p.linkName(mac), Dev: p.have.devName(kr.OIF), Route: del})
	}
}

// extraAddrs deletes recorded addresses that are not wanted and forgets
// recorded addresses that are no longer on the link.
func (p *pass) extraAddrs() {
	macs := make([]string, 0, len(p.owned.ENIs))
	for mac := range p.owned.ENIs {
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	for _, mac := range macs {
		re := p.owned.ENIs[mac]
		l := p.have.link(mac)
		if l == nil {
			continue // link gone: forgotten with the ENI
		}
		want := map[netip.Addr]bool{}
		if e := p.wantByMAC[mac]; e != nil && e.Disposition == plan.Configure && p.kind != passCleanup {
			for _, a := range e.Addrs {
				want[a.Prefix.Addr()] = true
			}
		}
		onLink := p.have.addrsOn(l.Index)
		removable := p.removable(mac)
		for _, s := range append([]string(nil), re.Addrs...) {
			ip, err := netip.ParseAddr(s)
			ka := onLink[ip]
			switch {
			case err != nil, ka == nil && !want[ip]:
				re.Addrs = remove(re.Addrs, s) // unparsable, or someone removed it
			case ka == nil, want[ip], !removable:
			default:
				p.add(Change{Op: OpDel, Kind: KindAddr, MAC: mac, Link: l.Name, Dev: l.Name,
					Addr: rtnl.Addr{Index: l.Index, Prefix: ka.Prefix}})
			}
		}
	}
}

// reportForeign lists foreign rules in or into ec2net's range and foreign
// routes in its tables, each once.
func (p *pass) reportForeign() {
	h := p.have
	for i := range h.rules {
		kr := &h.rules[i]
		if kr.Proto != Protocol && (plan.InRange(kr.Priority) || plan.InRange(kr.Table)) {
			p.foreign = append(p.foreign, ruleText("", kr.Rule))
		}
	}
	for i := range h.routes {
		kr := &h.routes[i]
		if kr.Proto != Protocol && plan.InRange(kr.Table) {
			p.foreign = append(p.foreign, routeText("", kr.Route, h.devName(kr.OIF)))
		}
	}
}
