package vpcsim

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Small builders for the nftables expressions the simulator's rulesets use.
// Each returns the bytecode that `nft` generates for the named match, so a
// ruleset reads like its nft text (kept in comments beside each use).
// Everything is programmed through netlink: the nft binary is not needed.

// nftConn opens a netfilter netlink connection in namespace h. Each Flush
// is one transaction.
func nftConn(h netns.NsHandle) (*nftables.Conn, error) {
	return nftables.New(nftables.WithNetNSFd(int(h)))
}

// Register numbers: reg 1 holds 16 bytes (32-bit registers 8-11), reg 2
// the next 16; a concatenation (ifname . address) spans both, as nft lays
// it out.
const (
	reg1 = 1
	reg2 = 2
)

// Ether types, as "ether type" compares them (network byte order).
const (
	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	etherTypeARP  = 0x0806
)

// matchEtherType is "ether type T" (bridge family: the link-layer header).
func matchEtherType(t uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(t)},
	}
}

// Offsets of the addresses in the IPv4 and IPv6 headers.
const (
	ip4SrcOff = 12
	ip4DstOff = 16
	ip6SrcOff = 8
	ip6DstOff = 24
)

// loadAddr loads the IP source or destination into reg (IPv4 when v4).
func loadAddr(reg uint32, v4, src bool) *expr.Payload {
	p := &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader}
	switch {
	case v4 && src:
		p.Offset, p.Len = ip4SrcOff, 4
	case v4:
		p.Offset, p.Len = ip4DstOff, 4
	case src:
		p.Offset, p.Len = ip6SrcOff, 16
	default:
		p.Offset, p.Len = ip6DstOff, 16
	}
	return p
}

// matchPrefix is "ip(6) saddr/daddr [!=] prefix". withEther adds the
// "ether type" dependency nft adds in the bridge family.
func matchPrefix(p netip.Prefix, src, negate, withEther bool) []expr.Any {
	v4 := p.Addr().Is4()
	var out []expr.Any
	if withEther {
		out = matchEtherType(map[bool]uint16{true: etherTypeIPv4, false: etherTypeIPv6}[v4])
	}
	p = p.Masked()
	n := uint32(p.Addr().BitLen() / 8)
	out = append(out, loadAddr(reg1, v4, src))
	if p.Bits() < p.Addr().BitLen() {
		out = append(out, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: n,
			Mask: prefixMask(p), Xor: make([]byte, n)})
	}
	op := expr.CmpOpEq
	if negate {
		op = expr.CmpOpNeq
	}
	return append(out, &expr.Cmp{Op: op, Register: reg1, Data: p.Addr().AsSlice()})
}

func prefixMask(p netip.Prefix) []byte {
	m := make([]byte, p.Addr().BitLen()/8)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	return m
}

// matchL4 is "meta l4proto P".
func matchL4(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{proto}},
	}
}

// matchICMPv6Type is "icmpv6 type T" in the bridge family.
func matchICMPv6Type(t byte) []expr.Any {
	out := matchEtherType(etherTypeIPv6)
	out = append(out, matchL4(unix.IPPROTO_ICMPV6)...)
	return append(out,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{t}})
}

// matchTCPDport is "tcp dport P".
func matchTCPDport(port uint16) []expr.Any {
	return append(matchL4(unix.IPPROTO_TCP),
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.BigEndian.PutUint16(port)})
}

// matchDHCPv4Client is "ether type ip udp sport 68 udp dport 67": a
// DHCPv4 client's message to the server.
func matchDHCPv4Client() []expr.Any {
	out := append(matchEtherType(etherTypeIPv4), matchL4(unix.IPPROTO_UDP)...)
	return append(out,
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{0, 68, 0, 67}})
}

// matchMark is "meta mark M".
func matchMark(m uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(m)},
	}
}

// setMark is "meta mark set M".
func setMark(m uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: binaryutil.NativeEndian.PutUint32(m)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
	}
}

// dnatTo is "dnat ip(6) to addr:port".
func dnatTo(a netip.Addr, port uint16) []expr.Any {
	fam := uint32(unix.NFPROTO_IPV4)
	if a.Is6() {
		fam = unix.NFPROTO_IPV6
	}
	return []expr.Any{
		&expr.Immediate{Register: reg1, Data: a.AsSlice()},
		&expr.Immediate{Register: reg2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: fam, RegAddrMin: reg1, RegProtoMin: reg2, Specified: true},
	}
}

func verdict(k expr.VerdictKind) *expr.Verdict { return &expr.Verdict{Kind: k} }

// ifnameKey is an interface name as nftables stores it: 16 bytes, NUL
// padded.
func ifnameKey(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

func comment(s string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, s)
}

// intervalElements turns prefixes into the elements of an interval set:
// each merged range [first, last] is a start element at first and an end
// element at last+1 (none when last is the top of the address space).
// Adjacent and overlapping prefixes are merged first, so no element starts
// where another ends.
func intervalElements(ps []netip.Prefix) []nftables.SetElement {
	type rng struct{ first, last netip.Addr }
	var rs []rng
	for _, p := range mergePrefixes(ps) {
		rs = append(rs, rng{p.Masked().Addr(), lastAddr(p)})
	}
	slices.SortFunc(rs, func(a, b rng) int { return a.first.Compare(b.first) })
	var merged []rng
	for _, r := range rs {
		if n := len(merged); n > 0 {
			prev := &merged[n-1]
			if next := prev.last.Next(); next.IsValid() && r.first.Compare(next) <= 0 {
				if r.last.Compare(prev.last) > 0 {
					prev.last = r.last
				}
				continue
			}
		}
		merged = append(merged, r)
	}
	var out []nftables.SetElement
	for _, r := range merged {
		out = append(out, nftables.SetElement{Key: r.first.AsSlice()})
		if end := r.last.Next(); end.IsValid() {
			out = append(out, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return out
}

// lastAddr is the highest address in p.
func lastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
