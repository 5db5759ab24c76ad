package rtnl

import "net/netip"

// Link is one network interface.
type Link struct {
	Index    int
	Name     string
	MAC      string // lowercase aa:bb:cc:dd:ee:ff; "" when the link has none
	MTU      int
	Up       bool // IFF_UP (administratively up)
	AltNames []string
	// AcceptRA: the link's IPv6 accept_ra is not 0 (false when the link
	// has no IPv6); from the link's own dump (IFLA_AF_SPEC), so no
	// sysctl read is needed to know it.
	AcceptRA bool
}

// Addr is one interface address.
type Addr struct {
	Index  int          // link index
	Prefix netip.Prefix // address and prefix length
	Flags  uint32       // IFA_F_*
	Proto  uint8        // IFA_PROTO (Linux 5.18+); 0 when unset or unsupported
}

// Route is one route. For deletion, the kernel matches every field given.
type Route struct {
	Family    int // 4 or 6
	Table     int
	Type      int // unix.RTN_*
	Scope     int
	Proto     int
	Metric    int
	TOS       int
	OIF       int // output link index; 0 when none (or multipath)
	Dst       netip.Prefix
	Gw        netip.Addr
	Src       netip.Addr // preferred source (RTA_PREFSRC)
	Multipath bool       // RTA_MULTIPATH: next hops not decoded
}

// Rule is one policy routing rule.
type Rule struct {
	Family   int // 4 or 6
	Priority int
	Table    int
	Proto    int
	Src      netip.Prefix // invalid: from all
	// Simple: no selector but the source and no action but "lookup
	// table". Selectors describes the others, iproute2-like, when not.
	Simple    bool
	Selectors string
}

// Op is what a write does with its object.
type Op int

const (
	Add     Op = iota // create; fails if it exists (NLM_F_EXCL)
	Replace           // create or replace (routes)
	Del               // delete
)
