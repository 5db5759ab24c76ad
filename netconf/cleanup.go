package netconf

import (
	"errors"
	"net/netip"
	"sort"
	"strconv"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/plan"
)

// Cleanup removes everything ec2net added in the namespace (rules and
// routes carrying Protocol, addresses recorded in the state file) and
// nothing else. The state file is emptied of what was removed.
func (r *Reconciler) Cleanup() (*Result, error) {
	end, err := r.begin(true)
	if err != nil {
		return nil, err
	}
	defer end()
	k, err := r.read(nil)
	if err != nil {
		return nil, err
	}
	p := &pass{k: k, st: &plan.State{}, state: r.state.clone(), results: map[string]*ENIResult{},
		tableOwner: map[int]string{}, localOwner: map[netip.Prefix]string{}, eniByMAC: map[string]*plan.ENI{}}
	if err := r.readTables(k, r.interestingTables(k, p.state)); err != nil {
		return nil, err
	}
	p.attributeRecorded()
	for i := range k.rules {
		if kr := &k.rules[i]; kr.proto == Protocol {
			p.add(delRuleChange(k, kr, p.tableOwner[kr.table]))
		}
	}
	for _, withGw := range []bool{true, false} {
		for i := range k.routes {
			kr := &k.routes[i]
			if kr.proto != Protocol || kr.gw.IsValid() != withGw {
				continue
			}
			mac := p.tableOwner[kr.table]
			if kr.table == plan.TableLocal {
				mac = p.localOwner[kr.dst]
			}
			p.add(delRouteChange(k, kr, mac))
		}
	}
	macs := make([]string, 0, len(p.state.ENIs))
	for mac := range p.state.ENIs {
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	for _, mac := range macs {
		se := p.state.ENIs[mac]
		l := k.byMAC[mac]
		if l == nil {
			se.Addrs = nil
			continue
		}
		onLink := map[netip.Addr]kAddr{}
		for _, a := range k.addrs[l.Index] {
			onLink[a.prefix.Addr()] = a
		}
		for _, s := range append([]string(nil), se.Addrs...) {
			ip, _ := netip.ParseAddr(s)
			ka, ok := onLink[ip]
			if !ok {
				se.Addrs = removeString(se.Addrs, s)
				continue
			}
			p.add(delOwnedAddr(mac, l.Name, l.Index, ka.prefix, s))
		}
	}
	sort.SliceStable(p.changes, func(i, j int) bool { return p.changes[i].phase < p.changes[j].phase })
	// Every entry is forgotten once its deletions succeeded.
	p.dropIfClean = macs
	r.reportForeign(p)
	return r.execute(p)
}

// ENIStatus is what IMDS says about one ENI next to what the kernel has.
type ENIStatus struct {
	MAC             string       `json:"mac"`
	Link            string       `json:"link,omitempty"`
	ENIID           string       `json:"eni_id,omitempty"`
	Card            int          `json:"network_card"`
	Device          int          `json:"device_number"`
	Table           int          `json:"table,omitempty"`
	Primary         bool         `json:"primary"`
	IMDSAddrs       []netip.Addr `json:"imds_addresses"` // local-ipv4s and ipv6s
	LinkAddrs       []netip.Addr `json:"link_addresses"` // global addresses on the link
	RulesWanted     int          `json:"rules_wanted"`
	RulesPresent    int          `json:"rules_present"`
	State           string       `json:"state"` // configured, drift, pending, invalid, unknown, excluded, absent (no link), unlisted (link with recorded state, not in IMDS)
	Reason          string       `json:"reason,omitempty"`
	PendingChanges  int          `json:"pending_changes"` // what Apply would do for it
	ForeignInTheWay int          `json:"foreign_in_the_way,omitempty"`
	AltNames        []string     `json:"altnames,omitempty"`
	MTU             int          `json:"mtu,omitempty"`
	IMDSState       string       `json:"imds_state,omitempty"` // the snapshot's state for the ENI
}

// Status reports, per ENI, what IMDS says against what the kernel has. It
// makes no writes. A nil snap (IMDS could not be read) still reports the
// kernel side of every ENI ec2net has configured, with state "unknown".
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
	p, err := r.compute(snap, cfg, true)
	if err != nil {
		return nil, err
	}
	pending := map[string]int{}
	for _, c := range p.changes {
		pending[c.MAC]++
	}
	var out []ENIStatus
	for i := range p.st.ENIs {
		e := &p.st.ENIs[i]
		s := ENIStatus{MAC: e.MAC, ENIID: e.ENIID, Card: e.Card, Device: e.Device, Table: e.Table, Primary: e.Primary,
			RulesWanted: len(e.Rules), PendingChanges: pending[e.MAC], IMDSState: e.IMDSState.String()}
		if ie := snap.ENI(e.MAC); ie != nil {
			s.IMDSAddrs = append(append(s.IMDSAddrs, ie.IPv4...), ie.IPv6...)
		}
		if e.Link != nil {
			s.Link, s.MTU, s.AltNames = e.Link.Name, e.Link.MTU, e.Link.AltNames
			for _, a := range p.k.addrs[e.Link.Index] {
				if !a.prefix.Addr().IsLinkLocalUnicast() {
					s.LinkAddrs = append(s.LinkAddrs, a.prefix.Addr())
				}
			}
		}
		s.RulesPresent = s.RulesWanted - pendingRules(p, e.MAC)
		if res := p.results[e.MAC]; res != nil {
			for _, f := range res.Failed {
				if errors.Is(f.Err, ErrForeignInTheWay) {
					s.ForeignInTheWay++
				}
			}
		}
		switch {
		case e.Disposition == plan.Exclude:
			s.State, s.Reason = "excluded", e.Reason
		case e.Disposition == plan.Hold && e.IMDSState != imds.Complete:
			s.State, s.Reason = e.IMDSState.String(), e.Reason
		case e.Disposition == plan.Hold:
			s.State, s.Reason = "invalid", e.Reason
		case e.Link == nil:
			s.State, s.Reason = "absent", "no link with this MAC"
		case s.PendingChanges > 0 || s.ForeignInTheWay > 0:
			s.State = "drift"
			s.Reason = driftReason(p, e.MAC)
		default:
			s.State = "configured"
		}
		out = append(out, s)
	}
	macs := make([]string, 0)
	for mac := range p.state.ENIs {
		if p.eniByMAC[mac] == nil {
			macs = append(macs, mac)
		}
	}
	sort.Strings(macs)
	for _, mac := range macs {
		se := p.state.ENIs[mac]
		s := ENIStatus{MAC: mac, ENIID: se.ENIID, Table: se.Table, PendingChanges: pending[mac], State: "unlisted",
			Reason: "not in IMDS; link present, kept until removal is confirmed"}
		if l := p.k.byMAC[mac]; l != nil {
			s.Link = l.Name
			if noIMDS {
				s.State, s.Reason = "unknown", "IMDS not read: kernel side only"
			}
			for _, a := range p.k.addrs[l.Index] {
				if !a.prefix.Addr().IsLinkLocalUnicast() {
					s.LinkAddrs = append(s.LinkAddrs, a.prefix.Addr())
				}
			}
		} else {
			s.State, s.Reason = "absent", "not in IMDS and link gone: owned rules and routes are orphans"
		}
		out = append(out, s)
	}
	return out, nil
}

func pendingRules(p *pass, mac string) int {
	n := 0
	for _, c := range p.changes {
		if c.MAC == mac && c.Kind == "rule" && c.Op == "add" {
			n++
		}
	}
	return n
}

func driftReason(p *pass, mac string) string {
	counts := map[string]int{}
	for _, c := range p.changes {
		if c.MAC == mac {
			counts[c.Op+" "+c.Kind]++
		}
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for _, k := range keys {
		if s != "" {
			s += ", "
		}
		s += k + " x" + itoa(counts[k])
	}
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

func itoa(n int) string { return strconv.Itoa(n) }
