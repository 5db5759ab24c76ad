// Package plan is ec2net's pure planner: from one IMDS snapshot, the
// configuration and the list of links the caller found in the namespace, it
// computes the kernel state ec2net wants (links, addresses, routes, rules)
// per ENI. It does no I/O, so every layout decision is covered by
// table-driven tests without a kernel.
package plan

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
)

// TableBase is the first per-ENI route table (and rule priority), as
// amazon-ec2-net-utils 2.x numbers them.
const TableBase = 10000

// TableMax is the last table of the per-ENI range: card imds.MaxNetworkCard,
// device imds.MaxDeviceNumber (32699, below the main table's rule at
// 32766). Foreign objects in TableBase..TableMax are reported.
const TableMax = TableBase + 100*imds.MaxNetworkCard + imds.MaxDeviceNumber

// Table returns the route table and rule priority of a non-primary ENI.
func Table(card, device int) int { return TableBase + 100*card + device }

// InRange reports whether a table or priority is in ec2net's range.
func InRange(n int) bool { return n >= TableBase && n <= TableMax }

// TableLocal is the kernel's local table (AnyIP routes go there).
const TableLocal = 255

// JumboMTU is what the VPC's DHCP sets on ENA and ixgbevf links.
const JumboMTU = 9001

// IPv6Gateway is the VPC router's link-local address on every subnet.
var IPv6Gateway = netip.MustParseAddr("fe80:ec2::1")

// LinkInfo is what the caller knows about one link in the namespace. The
// planner never reads the kernel itself.
type LinkInfo struct {
	Index    int
	Name     string
	MAC      string // lowercase aa:bb:cc:dd:ee:ff
	Driver   string // from ETHTOOL_GDRVINFO ("ena", "ixgbevf", "veth"...); "" when unknown
	MTU      int
	Up       bool // IFF_UP (administratively up)
	AltNames []string
}

// Disposition says what ec2net does with an ENI in this pass.
type Disposition int

const (
	// Configure: make the kernel match Addrs, Routes and Rules; remove
	// owned objects of this ENI that are not wanted.
	Configure Disposition = iota
	// Hold: IMDS data is not trustworthy (pending, invalid, unknown) or
	// conflicts: keep everything as it is, add nothing, remove nothing.
	Hold
	// Exclude: configuration says hands off: remove what ec2net owns on
	// it, add nothing.
	Exclude
	// Idle: nothing to configure: IMDS lists the ENI with no address of
	// either family and no link has its MAC here (an EFA-only
	// interface). A settled state, not a pending one.
	Idle
	// Orphan and Unattributed are never planned: the reconciler reports
	// them for owned objects of an ENI that is no longer in the snapshot,
	// or of no ENI at all (a lost record).
	Orphan
	Unattributed
)

func (d Disposition) String() string {
	switch d {
	case Configure:
		return "configure"
	case Hold:
		return "hold"
	case Exclude:
		return "exclude"
	case Idle:
		return "idle"
	case Orphan:
		return "orphan"
	case Unattributed:
		return "unattributed"
	}
	return "disposition(?)"
}

// MarshalText makes JSON carry the name.
func (d Disposition) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Addr is a desired interface address.
type Addr struct {
	Prefix        netip.Prefix // address and prefix length
	NoPrefixRoute bool         // IFA_F_NOPREFIXROUTE: no route in main for it
	NoDAD         bool         // IFA_F_NODAD: usable at once (the VPC does no DAD)
}

// RouteType is the rtnetlink route type ec2net uses.
type RouteType int

const (
	Unicast RouteType = iota
	Local             // AnyIP: the whole prefix is local to the host
)

// Scope is the rtnetlink route scope.
type Scope int

const (
	ScopeUniverse Scope = 0
	ScopeLink     Scope = 253
	ScopeHost     Scope = 254
)

// Route is a desired route.
type Route struct {
	Table     int
	Type      RouteType
	Dst       netip.Prefix // 0.0.0.0/0 or ::/0 for a default route
	Gw        netip.Addr   // invalid when directly connected
	Src       netip.Addr   // preferred source; invalid when none
	Scope     Scope
	LinkIndex int
	Dev       string // link name, for printing
	OnLink    bool
}

// Family returns 4 or 6.
func (r Route) Family() int {
	if r.Dst.Addr().Is4() {
		return 4
	}
	return 6
}

// Rule is a desired "from <Src> lookup <Table> pref <Priority>" rule.
type Rule struct {
	Priority int
	Src      netip.Prefix
	Table    int
}

// Family returns 4 or 6.
func (r Rule) Family() int {
	if r.Src.Addr().Is4() {
		return 4
	}
	return 6
}

// ENI is the desired state of one ENI from the snapshot.
type ENI struct {
	MAC            string
	ENIID          string
	Primary        bool
	Card, Device   int
	HasNetworkCard bool
	IMDSState      imds.ENIState
	Table          int // 0 for the primary (no table) and when unknown

	Disposition Disposition
	Reason      string // why held or excluded

	Link *LinkInfo // nil: no link with this MAC in the namespace

	Up       bool // bring the link up
	NoRA     bool // ignore router advertisements (accept_ra 0): see planENI
	MTU      int  // desired MTU; 0 leaves it alone
	AltNames []string

	Addrs  []Addr
	Routes []Route // in the order they must be added
	Rules  []Rule
}

// State is the desired state of every ENI in the snapshot, sorted by MAC.
type State struct {
	PrimaryMAC string
	ENIs       []ENI
}

// ENI returns the planned ENI with the given MAC, or nil.
func (s *State) ENI(mac string) *ENI {
	for i := range s.ENIs {
		if s.ENIs[i].MAC == mac {
			return &s.ENIs[i]
		}
	}
	return nil
}

// Links is the namespace's links as the planner and the reconciler see
// them: IndexLinks is the one place that decides which link is an ENI's.
type Links struct {
	All      []LinkInfo
	ByIndex  map[int]*LinkInfo
	ByMAC    map[string]*LinkInfo
	Loopback int // ifindex of lo (AnyIP routes use it)
	// Addrs are the addresses on each link, by index, when the caller
	// read them: the guard protects the primary link's (its DHCP address
	// included) as well as what IMDS lists for the primary ENI.
	Addrs map[int][]netip.Addr
}

// IndexLinks indexes the namespace's links. Two links with one MAC (a
// bond, a VLAN on the ENI) map to the lowest index, which is the physical
// device created first; links without a MAC map to nothing.
func IndexLinks(links []LinkInfo) Links {
	ix := Links{All: links, ByIndex: make(map[int]*LinkInfo, len(links)), ByMAC: make(map[string]*LinkInfo, len(links)), Loopback: 1}
	for i := range links {
		l := &links[i]
		ix.ByIndex[l.Index] = l
		if l.Name == "lo" {
			ix.Loopback = l.Index
			continue
		}
		if l.MAC == "" || l.MAC == "00:00:00:00:00:00" {
			continue
		}
		if prev, ok := ix.ByMAC[l.MAC]; !ok || l.Index < prev.Index {
			ix.ByMAC[l.MAC] = l
		}
	}
	return ix
}

// Desired computes the desired state of every ENI in the snapshot.
func Desired(snap *imds.Snapshot, cfg config.Config, links Links) (*State, error) {
	if snap == nil {
		return nil, fmt.Errorf("plan: no snapshot")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	st := &State{PrimaryMAC: snap.PrimaryMAC}
	for i := range snap.ENIs {
		e := &snap.ENIs[i]
		d := ENI{
			MAC:            e.MAC,
			ENIID:          e.InterfaceID,
			Primary:        e.Primary,
			Card:           e.NetworkCard,
			Device:         e.DeviceNumber,
			HasNetworkCard: e.HasNetworkCard,
			IMDSState:      e.State,
			Link:           links.ByMAC[e.MAC],
		}
		if !d.Primary && e.State == imds.Complete {
			d.Table = Table(e.NetworkCard, e.DeviceNumber)
		}
		switch {
		case excluded(cfg, e):
			d.Disposition = Exclude
			d.Reason = "excluded by configuration"
		case !d.Primary && cfg.SecondaryENIs == config.SecondaryNone:
			d.Disposition = Exclude
			d.Reason = "secondary-enis = none: only the primary ENI is configured"
		case e.State == imds.Pending && e.NoAddresses && d.Link == nil:
			d.Disposition = Idle
			d.Reason = "listed with no address and no link here: nothing to configure"
		case e.State != imds.Complete:
			d.Disposition = Hold
			d.Reason = e.State.String()
			if e.Reason != "" {
				d.Reason += ": " + e.Reason
			}
		case d.Primary && !cfg.ManagePrimary:
			d.Disposition = Exclude
			d.Reason = "primary ENI and manage-primary is false"
		default:
			d.Disposition = Configure
			planENI(&d, e, cfg, links.Loopback)
			if why := unsafe(&d, snap, links); why != "" {
				clearDesired(&d)
				d.Disposition, d.Reason = Hold, "unsafe metadata: "+why
			}
		}
		st.ENIs = append(st.ENIs, d)
	}
	sort.Slice(st.ENIs, func(i, j int) bool { return st.ENIs[i].MAC < st.ENIs[j].MAC })
	return st, nil
}

// excluded applies the exclusion lists. Only the MAC is trusted while an
// ENI is not Complete: a pending ENI's device number may read 0 and its id
// may be missing, and excluding (which removes owned objects) on a guess is
// as wrong as configuring on one.
func excluded(cfg config.Config, e *imds.ENI) bool {
	if e.State != imds.Complete {
		return cfg.Excluded(e.MAC, "", -1)
	}
	return cfg.Excluded(e.MAC, e.InterfaceID, e.DeviceNumber)
}

// usableIPv4 reports whether the ENI's subnet carries IPv4: in IPv6-only
// subnets IMDS gives the ENI a link-local 169.254/16 address, which gets no
// configuration.
func usableIPv4(e *imds.ENI) bool {
	return e.SubnetIPv4.IsValid() && len(e.IPv4) > 0 && !e.IPv4[0].IsLinkLocalUnicast()
}

func planENI(d *ENI, e *imds.ENI, cfg config.Config, lo int) {
	d.AltNames = altNames(e)
	v4 := usableIPv4(e)
	d.Addrs = make([]Addr, 0, len(e.IPv4)+len(e.IPv6))
	d.Rules = make([]Rule, 0, len(e.IPv4)+len(e.IPv6)+len(e.IPv4Prefixes)+len(e.IPv6Prefixes))
	if d.Primary {
		planPrimary(d, e, v4)
	} else {
		d.Up = true
		// The VPC sends router advertisements on every subnet. The kernel
		// would learn from them a default route and the subnet's prefix
		// route through this ENI in main, at the primary's metric: the
		// primary's own IPv6 traffic could then leave through it and be
		// dropped by the source/destination check. Everything this ENI
		// needs is in table T.
		d.NoRA = true
		d.MTU = wantMTU(cfg, d.Link)
		if v4 {
			planIPv4(d, e)
		}
		planIPv6(d, e)
	}
	if cfg.PrefixMode == config.PrefixAnyIP {
		d.Routes = append(d.Routes, anyIP(e, v4, lo)...)
	}
}

// planPrimary: the primary's first address, its DHCP routes and main are
// the DHCP client's. Only its other addresses are added, /32 or /128
// without a prefix route so main is not changed. No table, no rules:
// rules for the primary broke Docker's published ports
// (amazon-ec2-net-utils #97). MTU stays DHCP's business too.
func planPrimary(d *ENI, e *imds.ENI, v4 bool) {
	if v4 {
		for _, a := range e.IPv4[1:] {
			d.Addrs = append(d.Addrs, Addr{Prefix: netip.PrefixFrom(a, 32), NoPrefixRoute: true})
		}
	}
	for _, a := range e.IPv6 {
		d.Addrs = append(d.Addrs, Addr{Prefix: netip.PrefixFrom(a, 128), NoPrefixRoute: true, NoDAD: true})
	}
}

func (d *ENI) linkRef() (int, string) {
	if d.Link != nil {
		return d.Link.Index, d.Link.Name
	}
	return 0, ""
}

// planIPv4: the first address gets the subnet's length so that the
// kernel knows the subnet is on-link, but NO prefix route: a second
// 100.64.x.0/24 route in main (proto kernel, metric 0) would send the
// primary's own same-subnet traffic out of this ENI, where the VPC's
// source/destination check drops it. The subnet route lives only in table
// T, reached through the "from" rules.
func planIPv4(d *ENI, e *imds.ENI) {
	t := d.Table
	linkIndex, dev := d.linkRef()
	first := e.IPv4[0]
	d.Addrs = append(d.Addrs, Addr{Prefix: netip.PrefixFrom(first, e.SubnetIPv4.Bits()), NoPrefixRoute: true})
	for _, a := range e.IPv4[1:] {
		d.Addrs = append(d.Addrs, Addr{Prefix: netip.PrefixFrom(a, 32), NoPrefixRoute: true})
	}
	subnet := e.SubnetIPv4.Masked()
	d.Routes = append(d.Routes,
		Route{Table: t, Dst: subnet, Src: first, Scope: ScopeLink, LinkIndex: linkIndex, Dev: dev},
		Route{Table: t, Dst: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Gw: firstHost(subnet), LinkIndex: linkIndex, Dev: dev},
	)
	for _, a := range e.IPv4 {
		d.Rules = append(d.Rules, Rule{Priority: t, Src: netip.PrefixFrom(a, 32), Table: t})
	}
	for _, p := range e.IPv4Prefixes {
		d.Rules = append(d.Rules, Rule{Priority: t, Src: p.Masked(), Table: t})
	}
}

// planIPv6: addresses /128 without DAD (the VPC does none), the subnet
// route(s) and a default via the VPC router's link-local in table T.
func planIPv6(d *ENI, e *imds.ENI) {
	t := d.Table
	linkIndex, dev := d.linkRef()
	for _, a := range e.IPv6 {
		d.Addrs = append(d.Addrs, Addr{Prefix: netip.PrefixFrom(a, 128), NoPrefixRoute: true, NoDAD: true})
	}
	if len(e.SubnetIPv6) == 0 || (len(e.IPv6) == 0 && len(e.IPv6Prefixes) == 0) {
		return
	}
	var src netip.Addr
	if len(e.IPv6) > 0 {
		src = e.IPv6[0]
	}
	for _, s := range e.SubnetIPv6 {
		d.Routes = append(d.Routes, Route{Table: t, Dst: s.Masked(), Src: src, Scope: ScopeUniverse, LinkIndex: linkIndex, Dev: dev})
	}
	d.Routes = append(d.Routes, Route{Table: t, Dst: netip.PrefixFrom(netip.IPv6Unspecified(), 0), Gw: IPv6Gateway, LinkIndex: linkIndex, Dev: dev})
	for _, a := range e.IPv6 {
		d.Rules = append(d.Rules, Rule{Priority: t, Src: netip.PrefixFrom(a, 128), Table: t})
	}
	for _, p := range e.IPv6Prefixes {
		d.Rules = append(d.Rules, Rule{Priority: t, Src: p.Masked(), Table: t})
	}
}

// anyIP returns the local routes that make every address of the ENI's
// delegated prefixes answer on the host.
func anyIP(e *imds.ENI, v4 bool, lo int) []Route {
	var out []Route
	if v4 {
		for _, p := range e.IPv4Prefixes {
			out = append(out, Route{Table: TableLocal, Type: Local, Dst: p.Masked(), Scope: ScopeHost, LinkIndex: lo, Dev: "lo"})
		}
	}
	for _, p := range e.IPv6Prefixes {
		out = append(out, Route{Table: TableLocal, Type: Local, Dst: p.Masked(), Scope: ScopeHost, LinkIndex: lo, Dev: "lo"})
	}
	return out
}

func wantMTU(cfg config.Config, l *LinkInfo) int {
	switch cfg.MTU {
	case config.MTUKeep:
		return 0
	case config.MTUAuto:
		if l != nil && (l.Driver == "ena" || l.Driver == "ixgbevf") {
			return JumboMTU
		}
		return 0
	}
	return cfg.MTUValue()
}

// altNames returns the names amazon-ec2-net-utils gives an ENI's link; the
// ".card" suffix only when IMDS lists network-card, so that automation
// written for single-card instances keeps working.
func altNames(e *imds.ENI) []string {
	var out []string
	if e.InterfaceID != "" {
		out = append(out, e.InterfaceID)
	}
	n := "device-number-" + strconv.Itoa(e.DeviceNumber)
	if e.HasNetworkCard {
		n += "." + strconv.Itoa(e.NetworkCard)
	}
	return append(out, n)
}

// firstHost is the VPC router's address in an IPv4 subnet: base + 1.
func firstHost(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}
