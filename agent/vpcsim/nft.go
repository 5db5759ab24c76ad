package vpcsim

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The VPC source/destination check, as nftables bridge-family rules on the
// router's subnet bridges, programmed through netlink.
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
// up, the drop still happens. In nft syntax the table is:
//
//	table bridge vpcsim {
//		set dropped_from4 { type ifname . ipv4_addr; flags dynamic; counter; size 65535; }
//		(dropped_from6, dropped_to4, dropped_to6 alike)
//		map from_eni { type ifname : verdict; }
//		map to_eni { type ifname : verdict; }
//		chain prerouting {
//			type filter hook prerouting priority filter; policy accept;
//			ether type arp accept
//			icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept
//			ip6 saddr fe80::/10 accept
//			udp sport 68 udp dport 67 accept
//			iifname vmap @from_eni
//		}
//		chain postrouting {
//			type filter hook postrouting priority filter; policy accept;
//			ether type arp accept
//			icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } accept
//			ip6 daddr { fe80::/10, ff00::/8 } accept
//			ip daddr { 224.0.0.0/4, 255.255.255.255 } accept
//			oifname vmap @to_eni
//		}
//	}
const nftTable = "vpcsim"

// setIDs numbers the sets of a transaction. google/nftables numbers sets
// without one from a package variable it does not guard, a data race when
// two simulated VPCs program their routers at once (parallel tests).
var setIDs atomic.Uint32

func nextSetID() uint32 { return setIDs.Add(1) }

// bridgePriorityFilter is "priority filter" in the bridge family.
const bridgePriorityFilter = -200

var checkTable = &nftables.Table{Family: nftables.TableFamilyBridge, Name: nftTable}

// dropSet is one of the four records of dropped (port, address) pairs.
type dropSet struct {
	name string
	from bool // keyed by the ingress port and source, else egress and destination
	v4   bool
}

var dropSets = []dropSet{
	{"dropped_from4", true, true}, {"dropped_from6", true, false},
	{"dropped_to4", false, true}, {"dropped_to6", false, false},
}

func (d dropSet) set() *nftables.Set {
	addr := nftables.TypeIPAddr
	if !d.v4 {
		addr = nftables.TypeIP6Addr
	}
	return &nftables.Set{ID: nextSetID(), Table: checkTable, Name: d.name, Dynamic: true, Counter: true, Size: 65535,
		Concatenation: true, KeyType: nftables.MustConcatSetType(nftables.TypeIFName, addr)}
}

func dropSetFor(from, v4 bool) dropSet {
	for _, d := range dropSets {
		if d.from == from && d.v4 == v4 {
			return d
		}
	}
	panic("unreachable")
}

func portMap(from bool) *nftables.Set {
	name := "to_eni"
	if from {
		name = "from_eni"
	}
	// Interface names are host-order data to nft (for its listing only).
	return &nftables.Set{ID: nextSetID(), Table: checkTable, Name: name, IsMap: true, KeyByteOrder: binaryutil.NativeEndian,
		KeyType: nftables.TypeIFName, DataType: nftables.TypeVerdict}
}

func portSet(port string, v4 bool) *nftables.Set {
	if v4 {
		return &nftables.Set{ID: nextSetID(), Table: checkTable, Name: port + "_4", Interval: true, KeyType: nftables.TypeIPAddr}
	}
	return &nftables.Set{ID: nextSetID(), Table: checkTable, Name: port + "_6", Interval: true, KeyType: nftables.TypeIP6Addr}
}

func portChain(port string, from bool) *nftables.Chain {
	if from {
		return &nftables.Chain{Table: checkTable, Name: "from_" + port}
	}
	return &nftables.Chain{Table: checkTable, Name: "to_" + port}
}

// installRouterRuleset creates the table above in namespace h.
func installRouterRuleset(h netns.NsHandle) error {
	c, err := nftConn(h)
	if err != nil {
		return err
	}
	c.AddTable(checkTable)
	for _, d := range dropSets {
		if err := c.AddSet(d.set(), nil); err != nil {
			return err
		}
	}
	accept := nftables.ChainPolicyAccept
	for _, from := range []bool{true, false} {
		m := portMap(from)
		if err := c.AddSet(m, nil); err != nil {
			return err
		}
		ch := &nftables.Chain{Table: checkTable, Name: "postrouting", Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityRef(bridgePriorityFilter), Policy: &accept}
		if from {
			ch.Name, ch.Hooknum = "prerouting", nftables.ChainHookPrerouting
		}
		c.AddChain(ch)
		for _, exprs := range hookRules(from, m) {
			c.AddRule(&nftables.Rule{Table: checkTable, Chain: ch, Exprs: exprs})
		}
	}
	return c.Flush()
}

// ICMPv6 types of neighbour discovery.
const (
	icmpv6RouterSolicit   = 133
	icmpv6RouterAdvert    = 134
	icmpv6NeighborSolicit = 135
	icmpv6NeighborAdvert  = 136
)

// hookRules are the rules of the prerouting (from) or postrouting chain.
func hookRules(from bool, m *nftables.Set) [][]expr.Any {
	acc := verdict(expr.VerdictAccept)
	rules := [][]expr.Any{append(matchEtherType(etherTypeARP), acc)}
	nd := []byte{icmpv6NeighborSolicit, icmpv6NeighborAdvert, icmpv6RouterAdvert}
	passIPv6 := []string{"fe80::/10", "ff00::/8"}
	passIPv4 := []string{"224.0.0.0/4", "255.255.255.255/32"}
	meta := expr.MetaKeyOIFNAME
	if from {
		nd[2] = icmpv6RouterSolicit
		passIPv6, passIPv4 = passIPv6[:1], nil
		meta = expr.MetaKeyIIFNAME
	}
	for _, t := range nd {
		rules = append(rules, append(matchICMPv6Type(t), acc))
	}
	for _, p := range append(passIPv6, passIPv4...) {
		rules = append(rules, append(matchPrefix(netip.MustParsePrefix(p), from, false, true), acc))
	}
	if from {
		// A DHCP DISCOVER comes from 0.0.0.0, which no ENI owns; the
		// VPC's DHCP answers in front of the check.
		rules = append(rules, append(matchDHCPv4Client(), acc))
	}
	return append(rules, []expr.Any{
		&expr.Meta{Key: meta, Register: reg1},
		&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
	})
}

// addPortCheck declares port's sets (filled with the ENI's addresses) and
// check chains and hooks them into the bridge chains, in one transaction,
// so the port is never unchecked. A non-zero mark is set on every frame
// from the port (the router steers IMDS requests by it, one IMDS per
// instance).
func addPortCheck(h netns.NsHandle, port string, mark uint32, v4, v6 []netip.Prefix) error {
	c, err := nftConn(h)
	if err != nil {
		return err
	}
	sets := map[bool]*nftables.Set{true: portSet(port, true), false: portSet(port, false)}
	for fam, elems := range map[bool][]netip.Prefix{true: v4, false: v6} {
		if err := c.AddSet(sets[fam], intervalElements(elems)); err != nil {
			return err
		}
	}
	for _, from := range []bool{true, false} {
		ch := c.AddChain(portChain(port, from))
		if from && mark != 0 {
			c.AddRule(&nftables.Rule{Table: checkTable, Chain: ch, Exprs: setMark(mark)})
		}
		for _, v4 := range []bool{true, false} {
			for _, r := range portRules(port, from, v4, sets[v4]) {
				r.Table, r.Chain = checkTable, ch
				c.AddRule(r)
			}
		}
		el := nftables.SetElement{Key: ifnameKey(port), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name}}
		if err := c.SetAddElements(portMap(from), []nftables.SetElement{el}); err != nil {
			return err
		}
	}
	return c.Flush()
}

// portRules are, for one direction and family (here from, IPv4):
//
//	ip saddr != @eniN_4 add @dropped_from4 { iifname . ip saddr }
//	ip saddr != @eniN_4 counter drop comment "source not assigned to eniN"
func portRules(port string, from, v4 bool, s *nftables.Set) []*nftables.Rule {
	eth := uint16(etherTypeIPv6)
	if v4 {
		eth = etherTypeIPv4
	}
	notAssigned := func() []expr.Any {
		return append(matchEtherType(eth), loadAddr(reg1, v4, from),
			&expr.Lookup{SourceRegister: reg1, SetName: s.Name, SetID: s.ID, Invert: true})
	}
	meta, what := expr.MetaKeyOIFNAME, "destination"
	if from {
		meta, what = expr.MetaKeyIIFNAME, "source"
	}
	d := dropSetFor(from, v4)
	record := append(notAssigned(),
		&expr.Meta{Key: meta, Register: reg1},
		loadAddr(reg2, v4, from),
		&expr.Dynset{SrcRegKey: reg1, SetName: d.name, Operation: unix.NFT_DYNSET_OP_ADD})
	drop := append(notAssigned(), &expr.Counter{}, verdict(expr.VerdictDrop))
	return []*nftables.Rule{
		{Exprs: record},
		{Exprs: drop, UserData: comment(fmt.Sprintf("%s not assigned to %s", what, port))},
	}
}

// deletePortCheck undoes addPortCheck.
func deletePortCheck(h netns.NsHandle, port string) error {
	c, err := nftConn(h)
	if err != nil {
		return err
	}
	for _, from := range []bool{true, false} {
		if err := c.SetDeleteElements(portMap(from), []nftables.SetElement{{Key: ifnameKey(port)}}); err != nil {
			return err
		}
		ch := portChain(port, from)
		c.FlushChain(ch)
		c.DelChain(ch)
	}
	c.DelSet(portSet(port, true))
	c.DelSet(portSet(port, false))
	return c.Flush()
}

// syncPortSets replaces the contents of port's address sets.
func syncPortSets(h netns.NsHandle, port string, v4, v6 []netip.Prefix) error {
	c, err := nftConn(h)
	if err != nil {
		return err
	}
	for fam, elems := range map[bool][]netip.Prefix{true: v4, false: v6} {
		s := portSet(port, fam)
		c.FlushSet(s)
		if els := intervalElements(elems); len(els) > 0 {
			if err := c.SetAddElements(s, els); err != nil {
				return err
			}
		}
	}
	return c.Flush()
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
		if e.inst != v.def {
			legend[e.port] = fmt.Sprintf("%s (%s %s in %s)", e.port, e.Name, e.MAC, e.inst.Name)
		}
	}
	v.mu.Unlock()
	if err != nil {
		return "", err
	}
	recs, err := readDrops(h)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range recs {
		port := legend[r.port]
		if port == "" {
			port = r.port + " (detached)"
		}
		fmt.Fprintf(&b, "dropped %s %s %s: %d packets\n", r.what, port, r.addr, r.packets)
	}
	return b.String(), nil
}

type dropRecord struct {
	what       string // "from" or "to"
	port, addr string
	packets    uint64
}

// readDrops reads the four dynamic sets with their counters, sorted by
// direction, port and address.
func readDrops(h netns.NsHandle) ([]dropRecord, error) {
	c, err := nftConn(h)
	if err != nil {
		return nil, err
	}
	var recs []dropRecord
	for _, d := range dropSets {
		elems, err := c.GetSetElements(d.set())
		if err != nil {
			return nil, fmt.Errorf("vpcsim: read %s: %w", d.name, err)
		}
		for _, el := range elems {
			r, ok := decodeDropKey(el.Key)
			if !ok {
				continue
			}
			r.what = "to"
			if d.from {
				r.what = "from"
			}
			if el.Counter != nil {
				r.packets = el.Counter.Packets
			}
			recs = append(recs, r)
		}
	}
	slices.SortStableFunc(recs, func(a, b dropRecord) int {
		if a.what != b.what {
			return -strings.Compare(a.what, b.what) // "from" first
		}
		if a.port != b.port {
			return strings.Compare(a.port, b.port)
		}
		return strings.Compare(a.addr, b.addr)
	})
	return recs, nil
}

// decodeDropKey splits an ifname . address key: 16 bytes of NUL-padded
// name, then 4 or 16 bytes of address.
func decodeDropKey(k []byte) (dropRecord, bool) {
	if len(k) != unix.IFNAMSIZ+4 && len(k) != unix.IFNAMSIZ+16 {
		return dropRecord{}, false
	}
	name := strings.TrimRight(string(k[:unix.IFNAMSIZ]), "\x00")
	a, ok := netip.AddrFromSlice(k[unix.IFNAMSIZ:])
	if !ok {
		return dropRecord{}, false
	}
	return dropRecord{port: name, addr: a.String()}, true
}
