package plan

import (
	"fmt"
	"net/netip"

	"github.com/ec2net/ec2net/agent/imds"
)

// The guard that keeps the host reachable. A rule ec2net installs sends
// the traffic it selects out of a secondary ENI, where the VPC's
// source/destination check drops anything whose source that ENI does not
// own. If a rule (or an AnyIP local route) ever selected the primary
// ENI's addresses, the IMDS addresses or every source, the primary's
// traffic, IMDS requests included, would leave through the wrong ENI: IMDS
// unreachable, nothing ever corrected, SSH lost. A short inconsistent read
// can imply exactly that (the primary's address listed under a secondary
// ENI in the same subnet, ::/0 for a subnet), so whatever the metadata
// says, the planner never builds such an object: the ENI is held instead,
// with the reason, and everything else keeps working. agent/imds refuses
// most such metadata already; this is the last line, on what is built.

// IMDSAddrs are the instance metadata service's addresses.
var IMDSAddrs = []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254")}

func clearDesired(e *ENI) {
	e.Up, e.MTU, e.AltNames, e.Addrs, e.Routes, e.Rules = false, 0, nil, nil, nil, nil
}

// unsafe says why e's planned rules or local routes would cut the host
// off, or "".
func unsafe(e *ENI, snap *imds.Snapshot, links Links) string {
	protected := protectedAddrs(e, snap, links)
	check := func(what string, p netip.Prefix) string {
		if p.Bits() == 0 {
			return fmt.Sprintf("%s %v would select every address", what, p)
		}
		for _, a := range IMDSAddrs {
			if p.Contains(a) {
				return fmt.Sprintf("%s %v would capture IMDS traffic (%v)", what, p, a)
			}
		}
		for _, a := range protected {
			if p.Contains(a) {
				return fmt.Sprintf("%s %v would send the primary ENI's address %v out of this ENI", what, p, a)
			}
		}
		return ""
	}
	for _, r := range e.Rules {
		if why := check("rule from", r.Src); why != "" {
			return why
		}
	}
	for _, r := range e.Routes {
		if r.Type == Local {
			if why := check("local route", r.Dst); why != "" {
				return why
			}
		}
	}
	return ""
}

// protectedAddrs are the addresses no rule of e may select: the primary
// ENI's, as IMDS lists them and as its link has them (its DHCP address),
// unless e is the primary itself (it has no rules; its AnyIP prefixes are
// its own).
func protectedAddrs(e *ENI, snap *imds.Snapshot, links Links) []netip.Addr {
	if e.Primary {
		return nil
	}
	var out []netip.Addr
	for i := range snap.ENIs {
		p := &snap.ENIs[i]
		if !p.Primary {
			continue
		}
		out = append(append(out, p.IPv4...), p.IPv6...)
		if l := links.ByMAC[p.MAC]; l != nil {
			for _, a := range links.Addrs[l.Index] {
				if !a.IsLinkLocalUnicast() {
					out = append(out, a)
				}
			}
		}
	}
	return out
}
