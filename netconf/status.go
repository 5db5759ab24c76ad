package netconf

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/plan"
)

// State is an ENI's state in `ec2net status`. The one place that decides
// it is Status below.
type State int

const (
	StateConfigured State = iota // the kernel has everything wanted
	StateDrift                   // changes pending (or a foreign route in the way)
	StatePending                 // IMDS still propagating the ENI
	StateInvalid                 // IMDS answered with something that does not validate
	StateUnknown                 // IMDS could not be read for it
	StateExcluded                // configuration says hands off
	StateAbsent                  // no link with its MAC
	StateUnlisted                // link with recorded objects, not in IMDS
	StateEFAOnly                 // no address and no link here: nothing to configure
	StateDown                    // link set down by an administrator after ec2net brought it up
	// Path states (path.go): the objects may all be there, but the
	// kernel's route lookup for an address does not take its ENI.
	StateShadowed  // a foreign rule of higher priority wins
	StateWrongPath // a foreign route in the ENI's table, no route, or the wrong link
	StateRPFilter  // strict rp_filter drops what arrives for the address: its reply would leave elsewhere
)

var stateNames = [...]string{"configured", "drift", "pending", "invalid", "unknown", "excluded", "absent", "unlisted", "efa-only", "down",
	"shadowed", "wrong-path", "rp-filter"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "state(?)"
}

// MarshalText makes JSON carry the name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Healthy reports whether the state needs nobody's attention.
func (s State) Healthy() bool {
	switch s {
	case StateConfigured, StateExcluded, StateAbsent, StateUnlisted, StateEFAOnly:
		return true
	}
	return false
}

func stateOf(s imds.ENIState) State {
	switch s {
	case imds.Pending:
		return StatePending
	case imds.Invalid:
		return StateInvalid
	}
	return StateUnknown
}

// ENIStatus is what IMDS says about one ENI next to what the kernel has.
type ENIStatus struct {
	MAC             string       `json:"mac"`
	Link            string       `json:"link"`
	ENIID           string       `json:"eni_id"`
	Card            int          `json:"network_card"`
	Device          int          `json:"device_number"`
	Table           int          `json:"table"`
	Primary         bool         `json:"primary"`
	IMDSAddrs       []netip.Addr `json:"imds_addresses"` // local-ipv4s and ipv6s
	LinkAddrs       []netip.Addr `json:"link_addresses"` // global addresses on the link
	RulesWanted     int          `json:"rules_wanted"`
	RulesPresent    int          `json:"rules_present"`
	State           State        `json:"state"`
	Reason          string       `json:"reason"`
	PendingChanges  int          `json:"pending_changes"` // what Apply would do for it
	ForeignInTheWay int          `json:"foreign_in_the_way"`
	AltNames        []string     `json:"altnames"`
	MTU             int          `json:"mtu"`
	IMDSState       string       `json:"imds_state"` // the snapshot's state for the ENI ("" when not listed)
	Addrs           []AddrStatus `json:"addresses"`  // each address's path, as the kernel routes it (path.go)
}

// Status reports, per ENI, what IMDS says against what the kernel has. It
// makes no writes. A nil snap (IMDS could not be read) still reports the
// kernel side of every ENI ec2net has configured, with state unknown.
func (r *Reconciler) Status(snap *imds.Snapshot, cfg config.Config) ([]ENIStatus, error) {
	end, err := r.begin(false)
	if err != nil {
		return nil, err
	}
	defer end()
	noIMDS := snap == nil
	if noIMDS {
		snap = &imds.Snapshot{}
	}
	p, err := r.compute(snap, cfg, passStatus)
	if err != nil {
		return nil, err
	}
	var out []ENIStatus
	for i := range p.want.ENIs {
		out = append(out, p.wantedStatus(&p.want.ENIs[i], snap))
	}
	macs := make([]string, 0)
	for mac := range p.owned.ENIs {
		if p.wantByMAC[mac] == nil {
			macs = append(macs, mac)
		}
	}
	sort.Strings(macs)
	for _, mac := range macs {
		out = append(out, p.unlistedStatus(mac, noIMDS))
	}
	r.verifyPaths(p, snap, cfg, out)
	for i := range out {
		out[i].fillEmpty()
	}
	return out, nil
}

func (p *pass) wantedStatus(e *plan.ENI, snap *imds.Snapshot) ENIStatus {
	s := ENIStatus{MAC: e.MAC, ENIID: e.ENIID, Card: e.Card, Device: e.Device, Table: e.Table, Primary: e.Primary,
		RulesWanted: len(e.Rules), IMDSState: e.IMDSState.String()}
	if ie := snap.ENI(e.MAC); ie != nil {
		s.IMDSAddrs = append(append(s.IMDSAddrs, ie.IPv4...), ie.IPv6...)
	}
	if e.Link != nil {
		s.Link, s.MTU, s.AltNames = e.Link.Name, e.Link.MTU, e.Link.AltNames
		s.LinkAddrs = p.globalAddrs(e.Link.Index)
	}
	addRules := 0
	for _, c := range p.changes {
		if c.MAC == e.MAC {
			s.PendingChanges++
			if c.Kind == KindRule && c.Op == OpAdd {
				addRules++
			}
		}
	}
	s.RulesPresent = s.RulesWanted - addRules
	s.ForeignInTheWay = p.foreignInTheWay(e.MAC)
	switch {
	case e.Disposition == plan.Exclude:
		s.State, s.Reason = StateExcluded, e.Reason
	case e.Disposition == plan.Idle:
		s.State, s.Reason = StateEFAOnly, e.Reason
	case e.Disposition == plan.Hold && e.IMDSState != imds.Complete:
		s.State, s.Reason = stateOf(e.IMDSState), e.Reason
	case e.Disposition == plan.Hold:
		s.State, s.Reason = StateInvalid, e.Reason
	case e.Link == nil:
		s.State, s.Reason = StateAbsent, "no link with this MAC"
	case p.result(e.MAC).AdminDown:
		s.State, s.Reason = StateDown, "link set down by an administrator after ec2net brought it up: left down (ip link set "+e.Link.Name+" up to resume)"
	case s.PendingChanges > 0 || s.ForeignInTheWay > 0:
		s.State, s.Reason = StateDrift, p.driftReason(e.MAC)
	default:
		s.State = StateConfigured
	}
	return s
}

func (p *pass) unlistedStatus(mac string, noIMDS bool) ENIStatus {
	re := p.owned.ENIs[mac]
	s := ENIStatus{MAC: mac, ENIID: re.ENIID, Table: re.Table, State: StateUnlisted,
		Reason: "not in IMDS; link present, kept until removal is confirmed"}
	for _, c := range p.changes {
		if c.MAC == mac {
			s.PendingChanges++
		}
	}
	if l := p.have.link(mac); l != nil {
		s.Link = l.Name
		if noIMDS {
			s.State, s.Reason = StateUnknown, "IMDS not read: kernel side only"
		}
		s.LinkAddrs = p.globalAddrs(l.Index)
	} else {
		s.State, s.Reason = StateAbsent, "not in IMDS and link gone: owned rules and routes are orphans"
	}
	return s
}

func (p *pass) globalAddrs(index int) []netip.Addr {
	var out []netip.Addr
	for _, a := range p.have.addrs[index] {
		if !a.Prefix.Addr().IsLinkLocalUnicast() {
			out = append(out, a.Prefix.Addr())
		}
	}
	return out
}

// fillEmpty makes lists empty rather than null in JSON.
func (s *ENIStatus) fillEmpty() {
	for _, l := range []*[]netip.Addr{&s.IMDSAddrs, &s.LinkAddrs} {
		if *l == nil {
			*l = []netip.Addr{}
		}
	}
	if s.AltNames == nil {
		s.AltNames = []string{}
	}
	if s.Addrs == nil {
		s.Addrs = []AddrStatus{}
	}
}

// driftReason summarises an ENI's pending changes ("add rule x2, del
// addr x1") and failures.
func (p *pass) driftReason(mac string) string {
	counts := map[string]int{}
	for _, c := range p.changes {
		if c.MAC == mac {
			counts[c.Op.String()+" "+c.Kind.String()]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s x%d", k, counts[k]))
	}
	s := strings.Join(parts, ", ")
	if res := p.results[mac]; res != nil {
		for _, f := range res.Failed {
			if s != "" {
				s += "; "
			}
			s += f.Err.Error()
		}
	}
	return s
}
