package vpcsim

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// The VPC source/destination check, as nftables bridge-family rules on the
// router's subnet bridges.
//
// Every ENI port (the router end of an ENI's veth) has two interval sets of
// the addresses assigned to the ENI (IPv4 and IPv6; delegated prefixes are
// intervals). A frame entering the bridge from a port with an IP source
// outside the port's set is dropped in prerouting; a frame leaving the
// bridge towards a port with an IP destination outside the port's set is
// dropped in postrouting. Hooking prerouting/postrouting (not forward)
// covers traffic to and from the router itself as well as between ENIs of
// one subnet. ARP, neighbour discovery (whatever its addresses: Linux
// solicits from the address of the packet that needs resolving, which may
// be one the VPC does not know yet) and link-local IPv6 pass, as the VPC
// answers neighbour discovery itself. Frames on other ports (the router's own
// bridge, the remote link) are not checked.
//
// Each drop also records its (port, address) pair with a counter in a
// dynamic set, so a failing test can say which address was refused where.
// The record and the drop are separate rules: if the record set ever fills
// up, the drop still happens.
const nftTable = "vpcsim"

const routerRuleset = `table bridge vpcsim {
	set dropped_from4 { type ifname . ipv4_addr; flags dynamic; counter; size 65535; }
	set dropped_from6 { type ifname . ipv6_addr; flags dynamic; counter; size 65535; }
	set dropped_to4 { type ifname . ipv4_addr; flags dynamic; counter; size 65535; }
	set dropped_to6 { type ifname . ipv6_addr; flags dynamic; counter; size 65535; }
	map from_eni { type ifname : verdict; }
	map to_eni { type ifname : verdict; }
	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
		ether type arp accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept
		ip6 saddr fe80::/10 accept
		iifname vmap @from_eni
	}
	chain postrouting {
		type filter hook postrouting priority filter; policy accept;
		ether type arp accept
		icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept
		ip6 daddr { fe80::/10, ff00::/8 } accept
		ip daddr { 224.0.0.0/4, 255.255.255.255 } accept
		oifname vmap @to_eni
	}
}
`

// nftAddPortScript declares port's sets and check chains and hooks them
// into the bridge chains. The sets are filled by nftSetsScript in the same
// transaction, so the port is never unchecked.
func nftAddPortScript(port string) string {
	var b strings.Builder
	t := "bridge " + nftTable
	fmt.Fprintf(&b, "add set %s %s_4 { type ipv4_addr; flags interval; }\n", t, port)
	fmt.Fprintf(&b, "add set %s %s_6 { type ipv6_addr; flags interval; }\n", t, port)
	fmt.Fprintf(&b, "add chain %s from_%s\n", t, port)
	fmt.Fprintf(&b, "add rule %s from_%s ip saddr != @%s_4 add @dropped_from4 { iifname . ip saddr }\n", t, port, port)
	fmt.Fprintf(&b, "add rule %s from_%s ip saddr != @%s_4 counter drop comment \"source not assigned to %s\"\n", t, port, port, port)
	fmt.Fprintf(&b, "add rule %s from_%s ip6 saddr != @%s_6 add @dropped_from6 { iifname . ip6 saddr }\n", t, port, port)
	fmt.Fprintf(&b, "add rule %s from_%s ip6 saddr != @%s_6 counter drop comment \"source not assigned to %s\"\n", t, port, port, port)
	fmt.Fprintf(&b, "add chain %s to_%s\n", t, port)
	fmt.Fprintf(&b, "add rule %s to_%s ip daddr != @%s_4 add @dropped_to4 { oifname . ip daddr }\n", t, port, port)
	fmt.Fprintf(&b, "add rule %s to_%s ip daddr != @%s_4 counter drop comment \"destination not assigned to %s\"\n", t, port, port, port)
	fmt.Fprintf(&b, "add rule %s to_%s ip6 daddr != @%s_6 add @dropped_to6 { oifname . ip6 daddr }\n", t, port, port)
	fmt.Fprintf(&b, "add rule %s to_%s ip6 daddr != @%s_6 counter drop comment \"destination not assigned to %s\"\n", t, port, port, port)
	fmt.Fprintf(&b, "add element %s from_eni { \"%s\" : jump from_%s }\n", t, port, port)
	fmt.Fprintf(&b, "add element %s to_eni { \"%s\" : jump to_%s }\n", t, port, port)
	return b.String()
}

// nftDeletePortScript undoes nftAddPortScript.
func nftDeletePortScript(port string) string {
	var b strings.Builder
	t := "bridge " + nftTable
	fmt.Fprintf(&b, "delete element %s from_eni { \"%s\" }\n", t, port)
	fmt.Fprintf(&b, "delete element %s to_eni { \"%s\" }\n", t, port)
	for _, c := range []string{"from_", "to_"} {
		fmt.Fprintf(&b, "flush chain %s %s%s\n", t, c, port)
		fmt.Fprintf(&b, "delete chain %s %s%s\n", t, c, port)
	}
	fmt.Fprintf(&b, "delete set %s %s_4\n", t, port)
	fmt.Fprintf(&b, "delete set %s %s_6\n", t, port)
	return b.String()
}

// nftSetsScript replaces the contents of port's address sets.
func nftSetsScript(port string, v4, v6 []netip.Prefix) string {
	var b strings.Builder
	t := "bridge " + nftTable
	for _, fam := range []struct {
		suffix string
		elems  []netip.Prefix
	}{{"_4", v4}, {"_6", v6}} {
		fmt.Fprintf(&b, "flush set %s %s%s\n", t, port, fam.suffix)
		elems := mergePrefixes(fam.elems)
		if len(elems) == 0 {
			continue
		}
		parts := make([]string, len(elems))
		for i, p := range elems {
			if p.IsSingleIP() {
				parts[i] = p.Addr().String()
			} else {
				parts[i] = p.String()
			}
		}
		fmt.Fprintf(&b, "add element %s %s%s { %s }\n", t, port, fam.suffix, strings.Join(parts, ", "))
	}
	return b.String()
}

// mergePrefixes drops duplicates and prefixes contained in others: an
// interval set refuses overlapping elements. CIDR blocks either nest or
// are disjoint, so this leaves no overlap.
func mergePrefixes(in []netip.Prefix) []netip.Prefix {
	ps := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		ps = append(ps, p.Masked())
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if a.Bits() != b.Bits() {
			return a.Bits() - b.Bits() // wider first
		}
		return a.Addr().Compare(b.Addr())
	})
	var out []netip.Prefix
	for _, p := range ps {
		covered := false
		for _, q := range out {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}

// Drops lists, for every (port, address) pair the source/destination check
// has dropped, the packet count, with each port named by the instance link
// and MAC it belongs to. Empty when nothing was dropped.
func (v *VPC) Drops() (string, error) {
	v.mu.Lock()
	h, err := v.handleLocked(v.Router)
	legend := map[string]string{}
	for _, e := range v.enis {
		legend[e.port] = fmt.Sprintf("%s (%s %s)", e.port, e.Name, e.MAC)
	}
	v.mu.Unlock()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, set := range []struct{ name, what string }{
		{"dropped_from4", "from"}, {"dropped_from6", "from"},
		{"dropped_to4", "to"}, {"dropped_to6", "to"},
	} {
		out, err := execIn(context.Background(), h, nil, "nft", "list", "set", "bridge", nftTable, set.name)
		if err != nil {
			return "", err
		}
		for _, elem := range parseDynamicSet(out) {
			port := legend[elem.port]
			if port == "" {
				port = elem.port + " (detached)"
			}
			fmt.Fprintf(&b, "dropped %s %s %s: %d packets\n", set.what, port, elem.addr, elem.packets)
		}
	}
	return b.String(), nil
}

type dropRecord struct {
	port, addr string
	packets    int
}

// parseDynamicSet reads the elements of `nft list set` output for a set of
// type ifname . address with counters, e.g.
//
//	elements = { "eni1" . 100.64.1.20 counter packets 3 bytes 180,
//	             "eni2" . 100.64.2.9 counter packets 1 bytes 60 }
func parseDynamicSet(out string) []dropRecord {
	i := strings.Index(out, "elements = {")
	if i < 0 {
		return nil
	}
	body := out[i+len("elements = {"):]
	if j := strings.Index(body, "}"); j >= 0 {
		body = body[:j]
	}
	var recs []dropRecord
	for _, item := range strings.Split(body, ",") {
		f := strings.Fields(item)
		// "eni1" . 100.64.1.20 counter packets 3 bytes 180
		if len(f) < 6 || f[1] != "." {
			continue
		}
		r := dropRecord{port: strings.Trim(f[0], `"`), addr: f[2]}
		for k := 3; k+1 < len(f); k++ {
			if f[k] == "packets" {
				fmt.Sscan(f[k+1], &r.packets)
			}
		}
		recs = append(recs, r)
	}
	return recs
}
