package netconf

import (
	"net/netip"
	"os"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"github.com/ec2net/ec2net/netconf/plan"
	"golang.org/x/sys/unix"
)

// Path verification: comparing objects is not enough (a foreign rule of
// higher priority can shadow every one of them), so status asks the kernel
// the question each packet asks, with route lookups (RTM_GETROUTE), never
// by re-deriving the answer from dumps:
//
//   - out: from the address to a remote destination (ProbeRemote4/6),
//     which must leave through the ENI's link with the gateway of its
//     table's default route, found in its table (the primary's: through
//     its own link, whatever the table);
//   - subnet: from the address to its subnet, which must leave through
//     the link directly (secondary ENIs);
//   - in (IPv4): a packet from the remote destination arriving on the
//     link for the address must be delivered locally: the reverse-path
//     filter (rp_filter) drops it when the reply would leave elsewhere.
//
// An address failing any of these is not configured, whatever the objects
// say; pathcause.go names the rule or route that wins.

// AddrStatus is one address's path as the kernel routes it.
type AddrStatus struct {
	Address netip.Addr `json:"address"`
	// Prefix, for a delegated prefix, is the prefix; Address is then the
	// one of its addresses looked up for it ("" for an address).
	Prefix netip.Prefix `json:"prefix"`
	State  State        `json:"state"` // configured, drift, down, shadowed, wrong-path, rp-filter
	Cause  string       `json:"cause"` // what is wrong and what wins; "" when configured
	Path   string       `json:"path"`  // the way out the kernel answered ("via 100.64.2.1 dev eth1 table 10001")
}

// Subject names what was checked: the address, or the prefix and the
// address that stood for it.
func (a AddrStatus) Subject() string {
	if a.Prefix.IsValid() {
		return a.Address.String() + " (for delegated prefix " + a.Prefix.String() + ")"
	}
	return a.Address.String()
}

// The remote destinations of the lookups: documentation addresses
// (RFC 5737, RFC 3849), which no route names specifically, so that the
// lookups land on the default routes, as traffic to the internet does. No
// packet is sent to them.
var (
	ProbeRemote4 = netip.MustParseAddr("198.51.100.1")
	ProbeRemote6 = netip.MustParseAddr("2001:db8:ffff:ffff::1")
)

func probeRemote(a netip.Addr) netip.Addr {
	if a.Is4() {
		return ProbeRemote4
	}
	return ProbeRemote6
}

type probeKind int

const (
	probeOut probeKind = iota
	probeSubnet
	probeIn
)

// probe is one lookup and the answer it must get.
type probe struct {
	kind  probeKind
	q     rtnl.RouteQuery
	table int        // 0: any table
	oif   int        // the ENI's link
	gw    netip.Addr // with checkGw: the next hop (invalid: directly connected)
	check bool       // checkGw
}

// subject is one address under verification.
type subject struct {
	row    int // its ENI's row in the status
	eni    *plan.ENI
	link   *plan.LinkInfo
	probes []int // into verifier.probes
	st     AddrStatus
}

type verifier struct {
	r        *Reconciler
	p        *pass
	probes   []probe
	answers  []rtnl.RouteAnswer
	errs     []error
	subjects []subject
	rules    []rtnl.RuleMatch // read once, when a lookup fails
	rulesErr error
	rulesRd  bool
}

// verifyPaths fills the Addrs of the wanted ENIs' rows (rows[i] is
// p.want.ENIs[i]) and worsens each row's state to its worst address's.
func (r *Reconciler) verifyPaths(p *pass, snap *imds.Snapshot, cfg config.Config, rows []ENIStatus) {
	v := &verifier{r: r, p: p}
	for i := range p.want.ENIs {
		if i < len(rows) {
			v.addENI(i, &p.want.ENIs[i], snap, cfg)
		}
	}
	if len(v.probes) > 0 {
		qs := make([]rtnl.RouteQuery, len(v.probes))
		for i := range v.probes {
			qs[i] = v.probes[i].q
		}
		v.answers, v.errs = r.w.RouteGet(qs)
		v.judge()
	}
	for i := range v.subjects {
		s := &v.subjects[i]
		rows[s.row].Addrs = append(rows[s.row].Addrs, s.st)
	}
	for i := range rows {
		rows[i].worstOfAddrs()
	}
}

// verifiable reports whether an ENI's paths are checked: ENIs ec2net
// configures, and the primary unless an exclusion list names it (with
// manage-primary off its DHCP address still must leave through it).
func verifiable(e *plan.ENI, cfg config.Config) bool {
	switch {
	case e.Link == nil:
		return false
	case e.Disposition == plan.Configure:
		return true
	}
	return e.Primary && e.Disposition == plan.Exclude && !cfg.Excluded(e.MAC, e.ENIID, e.Device)
}

func (v *verifier) addENI(row int, e *plan.ENI, snap *imds.Snapshot, cfg config.Config) {
	if !verifiable(e, cfg) {
		return
	}
	l := e.Link
	onLink := v.p.have.addrsOn(l.Index)
	wanted := map[netip.Addr]bool{}
	var addrs []netip.Addr
	for _, a := range e.Addrs {
		wanted[a.Prefix.Addr()] = true
		addrs = append(addrs, a.Prefix.Addr())
	}
	if ie := snap.ENI(e.MAC); e.Primary && ie != nil {
		// The primary's DHCP address (and any other it holds) too.
		for _, a := range append(append([]netip.Addr{}, ie.IPv4...), ie.IPv6...) {
			if !wanted[a] && onLink[a] != nil && !a.IsLinkLocalUnicast() {
				addrs = append(addrs, a)
			}
		}
	}
	for _, a := range addrs {
		v.addSubject(subject{row: row, eni: e, link: l, st: AddrStatus{Address: a}}, onLink[a] != nil)
	}
	for _, p := range delegated(e, snap, cfg) {
		// One address stands for the prefix: its "from" rule decides the
		// way out for all of them alike.
		v.addSubject(subject{row: row, eni: e, link: l, st: AddrStatus{Address: p.Masked().Addr().Next(), Prefix: p}}, true)
	}
}

// addSubject queues an address's lookups, or states why there are none.
func (v *verifier) addSubject(s subject, onLink bool) {
	l := s.link
	switch {
	case !l.Up && v.p.bringsUp(s.eni.MAC):
		s.st.State, s.st.Cause = StateDrift, l.Name+" is down (apply brings it up)"
	case !l.Up:
		s.st.State, s.st.Cause = StateDown, l.Name+" is administratively down (ip link set "+l.Name+" up, unless that is intended)"
	case !onLink:
		s.st.State, s.st.Cause = StateDrift, "not on "+l.Name+" (apply adds it)"
	default:
		v.addProbes(&s, s.st.Address)
	}
	v.subjects = append(v.subjects, s)
}

// delegated lists the delegated prefixes of a configured secondary ENI
// whose path a lookup can check: an IPv6 lookup takes any source, an IPv4
// one only a local address, which the prefix's addresses are in anyip
// mode. (An IPv4 prefix in rules mode serves forwarded traffic; its rule
// is checked as an object.)
func delegated(e *plan.ENI, snap *imds.Snapshot, cfg config.Config) []netip.Prefix {
	ie := snap.ENI(e.MAC)
	if ie == nil || e.Primary || e.Disposition != plan.Configure {
		return nil
	}
	out := append([]netip.Prefix(nil), ie.IPv6Prefixes...)
	if cfg.PrefixMode == config.PrefixAnyIP {
		out = append(out, ie.IPv4Prefixes...)
	}
	return out
}

// bringsUp reports whether the pass sets an ENI's link up.
func (p *pass) bringsUp(mac string) bool {
	for i := range p.changes {
		if c := &p.changes[i]; c.MAC == mac && c.Kind == KindLink && c.LinkSet.Up {
			return true
		}
	}
	return false
}

func (v *verifier) add(s *subject, pr probe) {
	s.probes = append(s.probes, len(v.probes))
	v.probes = append(v.probes, pr)
}

// addProbes queues the lookups an address must pass.
func (v *verifier) addProbes(s *subject, a netip.Addr) {
	e, l := s.eni, s.link
	remote := probeRemote(a)
	out := probe{kind: probeOut, q: rtnl.RouteQuery{Src: a, Dst: remote}, oif: l.Index}
	if !e.Primary {
		for _, rt := range e.Routes {
			if rt.Table != e.Table || rt.Type != plan.Unicast || rt.Family() != family(a) {
				continue
			}
			if rt.Dst.Bits() == 0 {
				out.table, out.gw, out.check = e.Table, rt.Gw, true
				continue
			}
			dst := rt.Dst.Masked().Addr().Next()
			if dst == a {
				dst = dst.Next()
			}
			v.add(s, probe{kind: probeSubnet, q: rtnl.RouteQuery{Src: a, Dst: dst}, table: e.Table, oif: l.Index, check: true})
		}
	}
	// The default route's lookup first: its answer names the way out in
	// every cause.
	s.probes = append([]int{len(v.probes)}, s.probes...)
	v.probes = append(v.probes, out)
	if a.Is4() {
		v.add(s, probe{kind: probeIn, q: rtnl.RouteQuery{Src: remote, Dst: a, IIF: l.Index}})
	}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// ok reports whether probe i got the answer it must.
func (v *verifier) ok(i int) bool {
	pr, a, err := &v.probes[i], &v.answers[i], v.errs[i]
	if err != nil {
		return false
	}
	if pr.kind == probeIn {
		return a.Type == unix.RTN_LOCAL
	}
	return a.Type == unix.RTN_UNICAST && a.OIF == pr.oif && (pr.table == 0 || a.Table == pr.table) &&
		(!pr.check || a.Gw == pr.gw)
}

// judge sets each probed address's state from its answers.
func (v *verifier) judge() {
	var fib []int // probes whose matched route must be named
	for i := range v.subjects {
		s := &v.subjects[i]
		if len(s.probes) == 0 {
			continue
		}
		s.st.Path = v.pathText(s.probes[0])
		for _, k := range s.probes {
			if !v.ok(k) && v.probes[k].kind != probeIn {
				fib = append(fib, k)
				break
			}
		}
	}
	fibAns := v.fibMatches(fib)
	for i := range v.subjects {
		s := &v.subjects[i]
		if len(s.probes) > 0 {
			s.st.State, s.st.Cause = v.cause(s, fibAns)
		}
	}
}

// fibMatches asks, for each failing lookup, which route entry matched.
func (v *verifier) fibMatches(ks []int) map[int]fibAnswer {
	out := map[int]fibAnswer{}
	if len(ks) == 0 {
		return out
	}
	qs := make([]rtnl.RouteQuery, len(ks))
	for j, k := range ks {
		qs[j] = v.probes[k].q
		qs[j].FIBMatch = true
	}
	as, errs := v.r.w.RouteGet(qs)
	for j, k := range ks {
		out[k] = fibAnswer{as[j], errs[j]}
	}
	return out
}

type fibAnswer struct {
	a   rtnl.RouteAnswer
	err error
}

// ruleList reads every rule once per verification.
func (v *verifier) ruleList() []rtnl.RuleMatch {
	if !v.rulesRd {
		v.rulesRd = true
		v.rulesErr = rtnl.RetryDump(func() error {
			v.rules = v.rules[:0]
			return v.r.ruleDumper.RuleMatches(func(rm rtnl.RuleMatch) { v.rules = append(v.rules, rm) })
		})
	}
	return v.rules
}

var processUID = uint32(os.Getuid())

// worstOfAddrs makes an ENI's state the worst of its addresses' when
// that is a path failure (or drift where it was configured).
func (s *ENIStatus) worstOfAddrs() {
	worst, n := -1, 0
	for i := range s.Addrs {
		a := &s.Addrs[i]
		if a.State == StateConfigured {
			continue
		}
		n++
		if worst < 0 || severity(a.State) > severity(s.Addrs[worst].State) {
			worst = i
		}
	}
	if worst < 0 {
		return
	}
	w := &s.Addrs[worst]
	switch {
	case s.State == StateConfigured, s.State == StateDrift && severity(w.State) > severity(StateDrift),
		s.State == StateExcluded && s.Primary && severity(w.State) > severity(StateDrift):
	default:
		return
	}
	s.State = w.State
	s.Reason = w.Address.String() + ": " + w.Cause
	if n > 1 {
		s.Reason += " (and " + itoa(n-1) + " more address"
		if n > 2 {
			s.Reason += "es"
		}
		s.Reason += ")"
	}
}

// severity orders the states an address can have: a broken path needs a
// person more than drift, which the daemon repairs.
func severity(s State) int {
	switch s {
	case StateConfigured:
		return 0
	case StateDrift:
		return 1
	case StateRPFilter:
		return 2
	case StateWrongPath:
		return 3
	case StateShadowed:
		return 4
	case StateDown:
		return 5
	}
	return 0
}
