package imds

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Plausibility bounds. Metadata outside them is corruption or a transient
// inconsistency; acting on it could install a rule that selects every
// source, the primary's addresses or IMDS itself, and cut the host off
// (the IMDS read that would correct it then fails too).
const (
	// IPv4 subnets: "The allowed IPv4 CIDR block size for a subnet is
	// between a /28 netmask and /16 netmask" (Amazon VPC User Guide,
	// "Subnet CIDR blocks", docs.aws.amazon.com/vpc/latest/userguide/
	// subnet-sizing.html; same bound in the EC2 API's CreateSubnet).
	MinSubnetIPv4Bits = 16
	MaxSubnetIPv4Bits = 28
	// IPv6 subnets: the same page's "Subnet sizing for IPv6" allows /44
	// to /64 (in /4 steps, since IPAM-sized subnets); before that every
	// IPv6 subnet was a /64 (the EC2 API reference of CreateSubnet still
	// says so), which lies inside the range. The /4 steps are not
	// enforced: nothing here depends on them.
	MinSubnetIPv6Bits = 44
	MaxSubnetIPv6Bits = 64
	// Delegated prefixes are fixed size: "/28 IPv4 prefixes, /80 IPv6
	// prefixes" (EC2 User Guide, "Assign prefixes to network interfaces",
	// ec2-prefix-eni.md; shared/reference/imds.md [UG-prefix]).
	DelegatedIPv4Bits = 28
	DelegatedIPv6Bits = 80
)

// IMDS addresses: never an ENI's, never inside a prefix ec2net routes.
var imdsAddrs = []netip.Addr{netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254")}

// badAddr says why a listed address must never be configured, or "".
func badAddr(a netip.Addr) string {
	switch {
	case a.IsUnspecified():
		return "is unspecified"
	case a.IsLoopback():
		return "is loopback"
	case a.IsMulticast():
		return "is multicast"
	case slices.Contains(imdsAddrs, a):
		return "is the IMDS address"
	}
	return ""
}

// badPrefix says why a subnet or delegated prefix must never be routed,
// or "": a /0, a network that is itself unspecified, loopback or
// multicast, or one containing an IMDS address.
func badPrefix(p netip.Prefix) string {
	a := p.Masked().Addr()
	switch {
	case p.Bits() == 0:
		return "is a /0 (it would select every address)"
	case a.IsUnspecified():
		return "is the unspecified network"
	case a.IsLoopback():
		return "is loopback"
	case a.IsMulticast():
		return "is multicast"
	}
	for _, m := range imdsAddrs {
		if p.Contains(m) {
			return fmt.Sprintf("contains the IMDS address %v", m)
		}
	}
	return ""
}

// guard checks an ENI whose reads all succeeded against the bounds above.
// It returns a one-line reason, or "" when the ENI is plausible.
func guard(e *ENI) string {
	for _, p := range slices.Concat(e.VPCIPv4, e.VPCIPv6) {
		// VPC blocks are informational (nothing is routed by them): only
		// the absurd /0 is refused.
		if p.Bits() == 0 {
			return fmt.Sprintf("VPC CIDR %v is a /0", p)
		}
	}
	if p := e.SubnetIPv4; p.IsValid() {
		if why := checkSubnet(p, MinSubnetIPv4Bits, MaxSubnetIPv4Bits); why != "" {
			return why
		}
	}
	for _, p := range e.SubnetIPv6 {
		if why := checkSubnet(p, MinSubnetIPv6Bits, MaxSubnetIPv6Bits); why != "" {
			return why
		}
	}
	for _, p := range e.IPv4Prefixes {
		if why := checkDelegated(p, DelegatedIPv4Bits); why != "" {
			return why
		}
	}
	for _, p := range e.IPv6Prefixes {
		if why := checkDelegated(p, DelegatedIPv6Bits); why != "" {
			return why
		}
	}
	for _, a := range slices.Concat(e.IPv4, e.IPv6, e.IPv4LinkLocal) {
		if why := badAddr(a); why != "" {
			return fmt.Sprintf("address %v %s", a, why)
		}
	}
	return ""
}

// checkSubnet: a subnet CIDR of plausible size that badPrefix accepts.
func checkSubnet(p netip.Prefix, minBits, maxBits int) string {
	if why := badPrefix(p); why != "" {
		return fmt.Sprintf("subnet %v %s", p, why)
	}
	if b := p.Bits(); b < minBits || b > maxBits {
		return fmt.Sprintf("subnet %v: /%d is outside the /%d../%d a VPC subnet can have", p, b, minBits, maxBits)
	}
	return ""
}

// checkDelegated: a delegated prefix of exactly the size EC2 delegates.
func checkDelegated(p netip.Prefix, bits int) string {
	if why := badPrefix(p); why != "" {
		return fmt.Sprintf("delegated prefix %v %s", p, why)
	}
	if p.Bits() != bits {
		return fmt.Sprintf("delegated prefix %v is not a /%d", p, bits)
	}
	return ""
}

// claim is one address or prefix an ENI lists, as a prefix.
type claim struct {
	p   netip.Prefix
	eni int // index into the ENI slice
}

// ownedItems lists what an ENI would route or configure.
func ownedItems(e *ENI) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(e.IPv4)+len(e.IPv6)+len(e.IPv4Prefixes)+len(e.IPv6Prefixes))
	for _, a := range slices.Concat(e.IPv4, e.IPv6) {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return append(append(out, e.IPv4Prefixes...), e.IPv6Prefixes...)
}

// markSharedAddresses makes Invalid every Complete or Pending ENI that
// lists an address (or a prefix overlapping an address or prefix) that
// another ENI also lists. Against the primary ENI, only the other ENI is
// made Invalid: a rule for the primary's address through a secondary ENI
// would send the primary's traffic (IMDS included) where the
// source/destination check drops it. Between two secondaries both are,
// since nothing says which one is right. What an Unknown ENI listed
// counts as evidence too (its addresses were read before its failure),
// though it keeps its state; an Invalid ENI's lists do not count (they
// failed validation: one bogus ENI must not take others down).
func markSharedAddresses(enis []ENI) {
	var all []claim
	for i := range enis {
		if enis[i].State == Invalid {
			continue
		}
		for _, p := range ownedItems(&enis[i]) {
			all = append(all, claim{p: p.Masked(), eni: i})
		}
	}
	// CIDR blocks nest or are disjoint. Sorted by start address, shorter
	// first, a block overlaps an earlier one exactly when one of the
	// blocks still open (a chain of nested blocks) contains it.
	slices.SortFunc(all, func(a, b claim) int {
		if c := a.p.Addr().Compare(b.p.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.p.Bits(), b.p.Bits())
	})
	var open []claim
	for _, c := range all {
		for len(open) > 0 && !open[len(open)-1].p.Contains(c.p.Addr()) {
			open = open[:len(open)-1]
		}
		for _, o := range open {
			if o.eni != c.eni {
				conflict(enis, o, c)
			}
		}
		open = append(open, c)
	}
}

// conflict marks the ENIs of two overlapping claims (see markSharedAddresses).
func conflict(enis []ENI, a, b claim) {
	item := b.p // the more specific of the two
	show := func(p netip.Prefix) string {
		if p.IsSingleIP() {
			return p.Addr().String()
		}
		return p.String()
	}
	ea, eb := &enis[a.eni], &enis[b.eni]
	switch {
	case ea.Primary:
		invalidate(eb, fmt.Sprintf("address %s is also listed for the primary ENI %s", show(item), ea.MAC))
	case eb.Primary:
		invalidate(ea, fmt.Sprintf("address %s is also listed for the primary ENI %s", show(item), eb.MAC))
	default:
		invalidate(ea, fmt.Sprintf("address %s is also listed for ENI %s", show(item), eb.MAC))
		invalidate(eb, fmt.Sprintf("address %s is also listed for ENI %s", show(item), ea.MAC))
	}
}

func invalidate(e *ENI, reason string) {
	if e.State != Complete && e.State != Pending {
		return
	}
	e.State, e.Reason = Invalid, reason
	e.NoAddresses = false
	e.wait("", "", false)
}
