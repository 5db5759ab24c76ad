package netconf

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/plan"
	"go.uber.org/zap"
)

// passKind says what a pass is for.
type passKind int

const (
	passApply   passKind = iota // changes to execute
	passPlan                    // changes to print; reads every table
	passStatus                  // a comparison to report; reads every table
	passCleanup                 // nothing wanted: every owned object is extra
)

// pass is one comparison of want, have and owned, and the changes that
// make the kernel match.
type pass struct {
	kind    passKind
	have    *have
	want    *plan.State
	owned   *record // as it will be once the changes succeed
	changes []Change
	foreign []string

	results map[string]*ENIResult
	order   []string // MACs in result order
	forget  []string // record entries to drop once their deletions succeed

	wantByMAC  map[string]*plan.ENI
	tableOwner map[int]string          // table -> MAC that owns it (wanted or recorded)
	localOwner map[netip.Prefix]string // AnyIP prefix -> MAC
	ambiguous  bool                    // a held ENI has no recorded table: unattributed objects may be its
	rules      ruleIndex
	addrProto  uint8           // IFA_PROTO ec2net's addresses are given (0 in the old-kernel test mode)
	adoptable  map[string]bool // ENIs without a record entry, on a kernel without address marks
	room       int             // how many changes a cold start of the wanted ENIs makes, about
}

// compute reads the kernel, plans and diffs: everything of a pass but
// the writes.
func (r *Reconciler) compute(snap *imds.Snapshot, cfg config.Config, kind passKind) (*pass, error) {
	enis := map[string]bool{}
	for _, e := range snap.ENIs {
		enis[e.MAC] = true
	}
	h, err := r.read(enis, cfg.MTU == config.MTUAuto)
	if err != nil {
		return nil, fmt.Errorf("netconf: read kernel: %w", err)
	}
	want, err := plan.Desired(snap, cfg, h.links)
	if err != nil {
		return nil, err
	}
	p := &pass{kind: kind, have: h, want: want, owned: r.owned.clone(), results: map[string]*ENIResult{},
		wantByMAC: map[string]*plan.ENI{}, tableOwner: map[int]string{}, localOwner: map[netip.Prefix]string{},
		addrProto: Protocol, adoptable: map[string]bool{}}
	if r.noAddrProto {
		p.addrProto = 0
	}
	if !r.kernelMarks {
		for _, e := range want.ENIs {
			if p.owned.ENIs[e.MAC] == nil {
				p.adoptable[e.MAC] = true
			}
		}
	}
	if err := r.readTables(h, r.tablesToRead(p)); err != nil {
		return nil, fmt.Errorf("netconf: read kernel: %w", err)
	}
	r.readAll = true
	p.diff()
	sortByPhase(p.changes)
	for _, f := range p.foreign {
		if !r.reported[f] {
			r.reported[f] = true
			r.log.Info("foreign object left alone", zap.String("object", f))
		}
	}
	return p, nil
}

// sortByPhase orders changes by phase, keeping the diff's order within
// one: a stable counting sort, since there are a handful of phases and a
// change is a large value (a comparison sort moved each one about log n
// times: thousands of changes on a large instance).
func sortByPhase(changes []Change) {
	if len(changes) < 2 {
		return
	}
	phases := make([]int, len(changes))
	first, last := changes[0].phase(), changes[0].phase()
	for i := range changes {
		phases[i] = changes[i].phase()
		first, last = min(first, phases[i]), max(last, phases[i])
	}
	start := make([]int, last-first+2) // start[k]: where phase first+k begins
	for _, ph := range phases {
		start[ph-first+1]++
	}
	for k := 1; k < len(start); k++ {
		start[k] += start[k-1]
	}
	sorted := make([]Change, len(changes))
	for i, ph := range phases {
		sorted[start[ph-first]] = changes[i]
		start[ph-first]++
	}
	copy(changes, sorted)
}

// tablesToRead are the tables whose foreign routes are read, only where
// they matter: tables recorded or used by rules in our range (to report
// them), and tables where a wanted route is not already there as ours (a
// foreign route may be in its way). Plan and Status, and the first pass of
// a process, read every table ec2net uses so that foreign routes are
// reported and logged once.
func (r *Reconciler) tablesToRead(p *pass) map[int]bool {
	tables := map[int]bool{}
	for _, re := range p.owned.ENIs {
		if re.Table != 0 {
			tables[re.Table] = true
		}
	}
	for i := range p.have.rules {
		if t := p.have.rules[i].Table; plan.InRange(t) {
			tables[t] = true
		}
	}
	thorough := p.kind != passApply || !r.readAll
	for i := range p.want.ENIs {
		e := &p.want.ENIs[i]
		if e.Table == 0 {
			continue
		}
		if thorough || !p.have.ownedSatisfy(e) {
			tables[e.Table] = true
		} else {
			delete(tables, e.Table)
		}
	}
	return tables
}

// ownedSatisfy reports whether every wanted route of e is already in the
// kernel as ec2net's own.
func (h *have) ownedSatisfy(e *plan.ENI) bool {
	if e.Disposition != plan.Configure || e.Link == nil {
		return true
	}
	for _, rt := range e.Routes {
		want := wantedRoute(rt)
		found := false
		for i := range h.routes {
			if kr := &h.routes[i]; sameKey(&kr.Route, &want) && sameRoute(&kr.Route, &want) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// diff fills the pass: what each wanted ENI is missing, then what ec2net
// owns and no longer wants, then foreign objects worth reporting.
func (p *pass) diff() {
	for i := range p.want.ENIs {
		e := &p.want.ENIs[i]
		p.wantByMAC[e.MAC] = e
	}
	p.claim()
	p.attribute()
	for i := range p.want.ENIs {
		e := &p.want.ENIs[i]
		p.room += len(e.Addrs) + len(e.Routes) + len(e.Rules) + len(e.AltNames) + 3
	}
	for i := range p.want.ENIs {
		e := &p.want.ENIs[i]
		p.result(e.MAC)
		if e.Disposition != plan.Configure {
			continue
		}
		if e.Link == nil {
			p.fail(Change{Op: OpSet, Kind: KindLink, MAC: e.MAC}, ErrNoLink)
			continue
		}
		re := p.owned.eni(e.MAC)
		re.ENIID, re.Table, re.Local = e.ENIID, e.Table, nil
		for _, rt := range e.Routes {
			if rt.Type == plan.Local {
				re.Local = addSorted(re.Local, rt.Dst.String())
			}
		}
		p.missingLink(e)
		p.missingAddrs(e)
		p.missingRoutes(e)
		p.missingRules(e)
	}
	p.extraRules()
	p.extraRoutes()
	p.extraAddrs()
	p.reportForeign()
	p.forgetGone()
}

// claim brings into the record what is ec2net's without it: addresses
// the kernel marks with Protocol (IFA_PROTO, Linux 5.18+), whatever the
// record says (it may be lost, truncated or behind a crash), and
// addresses a crashed pass intended that its link now has.
func (p *pass) claim() {
	for mac, l := range p.have.links.ByMAC {
		for _, a := range p.have.addrs[l.Index] {
			if a.Proto == Protocol {
				re := p.owned.eni(mac)
				re.Addrs = addSorted(re.Addrs, a.Prefix.Addr().String())
			}
		}
	}
	for mac, re := range p.owned.ENIs {
		if len(re.Intent) == 0 {
			continue
		}
		if l := p.have.link(mac); l != nil {
			on := p.have.addrsOn(l.Index)
			for _, s := range re.Intent {
				if ip, err := netip.ParseAddr(s); err == nil && on[ip] != nil {
					re.Addrs = addSorted(re.Addrs, s)
				}
			}
		}
		re.Intent = nil
	}
}

// attribute says which ENI owns each table and local prefix: the wanted
// ENIs first, then what the record says they were created for (for ENIs
// whose link or metadata has gone).
func (p *pass) attribute() {
	for mac, re := range p.owned.ENIs {
		if re.Table != 0 {
			p.tableOwner[re.Table] = mac
		}
		for _, s := range re.Local {
			if pf, err := netip.ParsePrefix(s); err == nil {
				p.localOwner[pf] = mac
			}
		}
	}
	for i := range p.want.ENIs {
		e := &p.want.ENIs[i]
		if e.Table != 0 {
			p.tableOwner[e.Table] = e.MAC
		}
		for _, rt := range e.Routes {
			if rt.Type == plan.Local {
				p.localOwner[rt.Dst] = e.MAC
			}
		}
		if e.Disposition == plan.Hold && !e.Primary {
			if re := p.owned.ENIs[e.MAC]; re == nil || re.Table == 0 {
				p.ambiguous = true
			}
		}
	}
}

// forgetGone drops the record of ENIs whose link is gone and that IMDS no
// longer lists (every entry, in a cleanup) once their deletions succeed.
func (p *pass) forgetGone() {
	for mac, re := range p.owned.ENIs {
		gone := p.wantByMAC[mac] == nil && p.have.link(mac) == nil
		if gone || p.kind == passCleanup {
			if p.have.link(mac) == nil {
				re.Addrs = nil // gone with the link
			}
			p.forget = append(p.forget, mac)
			p.result(mac)
		}
	}
	sort.Strings(p.forget)
}

func (p *pass) result(mac string) *ENIResult {
	if res := p.results[mac]; res != nil {
		return res
	}
	res := &ENIResult{MAC: mac}
	if l := p.have.link(mac); l != nil && mac != "" {
		res.Link = l.Name
	}
	switch e, re := p.wantByMAC[mac], p.owned.ENIs[mac]; {
	case e != nil:
		res.ENIID, res.Table, res.Disposition, res.Reason, res.IMDSState = e.ENIID, e.Table, e.Disposition, e.Reason, e.IMDSState
	case re != nil:
		res.ENIID, res.Table, res.Disposition = re.ENIID, re.Table, plan.Orphan
	case mac == "":
		res.Disposition = plan.Unattributed
	}
	p.results[mac] = res
	p.order = append(p.order, mac)
	return res
}

func (p *pass) add(c Change) {
	p.result(c.MAC)
	if p.changes == nil {
		// Room for a cold start's changes at once, taken only when there
		// is a change (a no-change pass allocates nothing): a Change is a
		// few hundred bytes, and growing by doubling copied megabytes on
		// a large instance, a fifth of a cold apply's CPU.
		p.changes = make([]Change, 0, p.room)
	}
	p.changes = append(p.changes, c)
}

func (p *pass) fail(c Change, err error) {
	res := p.result(c.MAC)
	res.Failed = append(res.Failed, ChangeError{Change: c, Err: err})
}

// linkName is the name of an ENI's link, "" when it has none.
func (p *pass) linkName(mac string) string {
	if l := p.have.link(mac); l != nil && mac != "" {
		return l.Name
	}
	return ""
}

// foreignInTheWay lists the foreign routes blocking a wanted one.
func (p *pass) foreignInTheWay(mac string) int {
	n := 0
	if res := p.results[mac]; res != nil {
		for _, f := range res.Failed {
			if errors.Is(f.Err, ErrForeignInTheWay) {
				n++
			}
		}
	}
	return n
}
