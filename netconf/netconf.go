// Package netconf is the only code in ec2net that writes kernel networking
// state. It reads a namespace's links, addresses, routes and rules (one
// dump of each kind per pass), diffs them against netconf/plan's desired
// state and makes the smallest set of netlink changes, touching only what
// ec2net owns: routes and rules tagged with Protocol and addresses recorded
// in the state file.
package netconf

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/plan"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Protocol is the rtnetlink protocol number (rtm_protocol for routes,
// FRA_PROTOCOL for rules) on every route and rule ec2net creates; it is how
// ec2net recognises its own objects and leaves everyone else's alone.
//
// 236 is not named in iproute2's rt_protos (/usr/share/iproute2/rt_protos
// and the kernel's RTPROT_* stop at 99 for routing daemons: bird 12, zebra
// 11, dhcp 16, keepalived 18, babel 42, openr 99, bgp 186, isis 187, ospf
// 188, rip 189, eigrp 192) and no routing daemon we know uses it. Name it
// locally with `echo "236 ec2net" >> /etc/iproute2/rt_protos.d/ec2net.conf`.
const Protocol = 236

// Options configures a Reconciler.
type Options struct {
	// NetNS is the namespace to act in. The zero value and netns.None()
	// mean the caller's current namespace.
	NetNS netns.NsHandle
	// StateDir holds this namespace's state file; created 0700 if missing.
	// Empty means /run/ec2net/<nsutil.Cookie(NetNS)>.
	StateDir string
	Logger   *zap.Logger // nil: no logging
}

// Reconciler reads and changes one namespace. Its methods are safe for
// concurrent use (they serialise).
type Reconciler struct {
	mu       sync.Mutex
	w        *nlWriter  // every write
	raw      *rawDumper // address dumps
	rules    *rawDumper // rule dumps (concurrent with addresses)
	links    *rawDumper // link dumps
	strict   *rawDumper // route dumps the kernel filters (strict checking)
	ethFD    int
	lockFD   int // <stateDir>/lock: serialises ec2net processes in one namespace
	stateDir string
	log      *zap.Logger
	state    *stateFile
	writes   int
	reported map[string]bool // foreign objects already logged
	readAll  bool            // a pass has read every table in use
	ruleBuf  []kRule         // reused by read
}

// New opens a netlink handle in o.NetNS and loads the state file.
func New(o Options) (*Reconciler, error) {
	ns := o.NetNS
	if ns <= 0 {
		cur, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("netconf: current namespace: %w", err)
		}
		defer cur.Close()
		ns = cur
	}
	r := &Reconciler{ethFD: -1, lockFD: -1, log: o.Logger, reported: map[string]bool{}}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.stateDir = o.StateDir
	if r.stateDir == "" {
		c, err := nsutil.Cookie(ns)
		if err != nil {
			return nil, fmt.Errorf("netconf: name namespace: %w", err)
		}
		r.stateDir = filepath.Join(config.Default().StateDir, c)
	}
	if err := os.MkdirAll(r.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("netconf: state dir: %w", err)
	}
	lockFD, err := unix.Open(filepath.Join(r.stateDir, "lock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("netconf: state lock: %w", err)
	}
	r.lockFD = lockFD
	r.loadState()
	w, err := newNLWriter(ns)
	if err != nil {
		return nil, fmt.Errorf("netconf: netlink socket: %w", err)
	}
	r.w = w
	var dumpers [4]*rawDumper
	for i := range dumpers {
		d, err := newRawDumper(ns, i == 3)
		if err != nil {
			w.close()
			for _, o := range dumpers[:i] {
				o.close()
			}
			return nil, fmt.Errorf("netconf: netlink socket: %w", err)
		}
		dumpers[i] = d
	}
	r.raw, r.rules, r.links, r.strict = dumpers[0], dumpers[1], dumpers[2], dumpers[3]
	// The ethtool socket must live in the namespace: ioctls resolve link
	// names in the socket's namespace.
	_ = nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			r.ethFD = fd
		}
		return err
	})
	return r, nil
}

// Close releases the netlink handle.
func (r *Reconciler) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		r.w.close()
		for _, d := range []*rawDumper{r.raw, r.rules, r.links, r.strict} {
			d.close()
		}
		r.w, r.raw, r.rules, r.links, r.strict = nil, nil, nil, nil, nil
	}
	if r.ethFD >= 0 {
		unix.Close(r.ethFD)
		r.ethFD = -1
	}
	if r.lockFD >= 0 {
		unix.Close(r.lockFD)
		r.lockFD = -1
	}
	return nil
}

// begin starts a pass: it takes the reconciler's mutex and the
// namespace's state lock (shared for reading passes, exclusive for passes
// that write) and reloads the state file, so that the daemon and a
// concurrent `ec2net apply` or `cleanup` in the same namespace take turns
// and each starts from the other's records. end releases both.
func (r *Reconciler) begin(exclusive bool) (end func(), err error) {
	r.mu.Lock()
	if r.lockFD < 0 {
		r.mu.Unlock()
		return nil, errors.New("netconf: reconciler closed")
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(r.lockFD, how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("netconf: state lock: %w", err)
	}
	r.loadState()
	return func() {
		_ = unix.Flock(r.lockFD, unix.LOCK_UN)
		r.mu.Unlock()
	}, nil
}

func (r *Reconciler) loadState() {
	st, err := loadState(r.stateDir)
	if err != nil {
		// Unreadable state loses only the record of which addresses
		// ec2net added: they are then never deleted, the safe side.
		r.log.Warn("state file unreadable, starting empty", zap.Error(err))
		st = newState()
	}
	st.prune()
	r.state = st
}

// StateDir returns the directory of the state file.
func (r *Reconciler) StateDir() string { return r.stateDir }

// Change is one netlink write.
type Change struct {
	Op   string // "add", "del" or "set"
	Kind string // "addr", "route", "rule" or "link"
	MAC  string // the ENI it belongs to; "" for an owned object no ENI claims
	Link string
	Text string // iproute2-like command

	phase int
	enc   func(m *msgBuf)       // the netlink request
	post  func(err error) error // maps the kernel's answer (nil: success); nil keeps it
	onOK  func(s *stateFile)
}

// String prints the change with its sign: "+" add, "-" delete, "~" set.
func (c Change) String() string {
	switch c.Op {
	case "add":
		return "+ " + c.Text
	case "del":
		return "- " + c.Text
	}
	return "~ " + c.Text
}

// Plan is what Apply would do.
type Plan struct {
	Changes []Change
	Foreign []string // foreign objects in or near ec2net's ranges, one line each
	Notes   []string // held, excluded and link-less ENIs, conflicts
}

// String prints the changes one per line, then notes and foreign objects
// as "#" comments; "(no changes)" when there is nothing to do.
func (p *Plan) String() string {
	var b strings.Builder
	if len(p.Changes) == 0 {
		b.WriteString("(no changes)\n")
	}
	for _, c := range p.Changes {
		b.WriteString(c.String())
		b.WriteByte('\n')
	}
	for _, n := range p.Notes {
		b.WriteString("# ")
		b.WriteString(n)
		b.WriteByte('\n')
	}
	for _, f := range p.Foreign {
		b.WriteString("# foreign, left alone: ")
		b.WriteString(f)
		b.WriteByte('\n')
	}
	return b.String()
}

// ChangeError is a change that failed (or could not be attempted).
type ChangeError struct {
	Change Change
	Err    error
}

func (e ChangeError) Error() string { return e.Change.String() + ": " + e.Err.Error() }

// ENIResult is what Apply or Cleanup did for one ENI.
type ENIResult struct {
	MAC, Link, ENIID string
	Table            int
	Disposition      string // configure, hold, exclude, orphan (ENI gone), unattributed
	Applied          []Change
	Failed           []ChangeError
}

// Result is the outcome of Apply or Cleanup.
type Result struct {
	ENIs    []ENIResult
	Writes  int // netlink write requests made
	Foreign []string
}

// Failed returns every failed change of every ENI.
func (r *Result) Failed() []ChangeError {
	var out []ChangeError
	for _, e := range r.ENIs {
		out = append(out, e.Failed...)
	}
	return out
}

// ErrNoLink: IMDS lists the ENI but no link in the namespace has its MAC.
var ErrNoLink = errors.New("no link with this MAC in the namespace")

// ErrForeignInTheWay: a foreign route occupies the place of a desired one.
var ErrForeignInTheWay = errors.New("a foreign route is in the way")

// Plan reads the kernel, computes the desired state and returns the
// changes Apply would make. No writes.
func (r *Reconciler) Plan(snap *imds.Snapshot, cfg config.Config) (*Plan, error) {
	end, err := r.begin(false)
	if err != nil {
		return nil, err
	}
	defer end()
	p, err := r.compute(snap, cfg, true)
	if err != nil {
		return nil, err
	}
	return &Plan{Changes: p.changes, Foreign: p.foreign, Notes: p.notes}, nil
}

// Apply makes the changes. Per-ENI failures are in the Result and do not
// stop the other ENIs; the error is for global failures only (the kernel
// cannot be read, the state file cannot be written).
func (r *Reconciler) Apply(snap *imds.Snapshot, cfg config.Config) (*Result, error) {
	end, err := r.begin(true)
	if err != nil {
		return nil, err
	}
	defer end()
	p, err := r.compute(snap, cfg, false)
	if err != nil {
		return nil, err
	}
	return r.execute(p)
}

func (r *Reconciler) execute(p *pass) (*Result, error) {
	before := r.writes
	// Every netlink write goes through here, counted.
	encs := make([]func(m *msgBuf), len(p.changes))
	for i := range p.changes {
		encs[i] = p.changes[i].enc
	}
	r.writes += len(encs)
	errs := r.w.send(encs)
	for i, c := range p.changes {
		res := p.result(c.MAC)
		err := errs[i]
		if c.post != nil {
			err = c.post(err)
		}
		if err != nil {
			res.Failed = append(res.Failed, ChangeError{Change: c, Err: err})
			r.log.Warn("change failed", zap.String("mac", c.MAC), zap.String("change", c.String()), zap.Error(err))
			continue
		}
		res.Applied = append(res.Applied, c)
		if c.onOK != nil {
			c.onOK(p.state)
		}
		r.log.Debug("applied", zap.String("mac", c.MAC), zap.String("change", c.String()))
	}
	for _, mac := range p.dropIfClean {
		if res := p.results[mac]; res == nil || len(res.Failed) == 0 {
			delete(p.state.ENIs, mac)
		}
	}
	out := &Result{Writes: r.writes - before, Foreign: p.foreign}
	for _, mac := range p.order {
		out.ENIs = append(out.ENIs, *p.results[mac])
	}
	if err := r.commitState(p.state); err != nil {
		return out, err
	}
	return out, nil
}

// commitState writes the state file when it changed.
func (r *Reconciler) commitState(s *stateFile) error {
	s.prune()
	if s.equal(r.state) {
		return nil
	}
	nb, err := s.encode()
	if err != nil {
		return err
	}
	if err := saveState(r.stateDir, nb); err != nil {
		return fmt.Errorf("netconf: write state: %w", err)
	}
	r.state = s
	return nil
}

// pass is one diff of the kernel against the desired state.
type pass struct {
	k       *kernel
	st      *plan.State
	state   *stateFile // the state as it will be once the changes succeed
	changes []Change
	foreign []string
	notes   []string

	results     map[string]*ENIResult
	order       []string // MACs in result order
	dropIfClean []string // state entries to forget once their deletions succeed

	tableOwner  map[int]string
	localOwner  map[netip.Prefix]string
	eniByMAC    map[string]*plan.ENI
	ambiguous   bool // an ENI is held whose table is not recorded
	rulesByKey  map[ruleKey]int
	addrsByLink map[int]map[netip.Addr]*kAddr
	nextRule    []int
}

func (p *pass) result(mac string) *ENIResult {
	if res := p.results[mac]; res != nil {
		return res
	}
	res := &ENIResult{MAC: mac}
	if l := p.k.byMAC[mac]; l != nil && mac != "" {
		res.Link = l.Name
	}
	if e := p.eniByMAC[mac]; e != nil {
		res.ENIID, res.Table, res.Disposition = e.ENIID, e.Table, e.Disposition.String()
	} else if se := p.state.ENIs[mac]; se != nil {
		res.ENIID, res.Table, res.Disposition = se.ENIID, se.Table, "orphan"
	} else if mac == "" {
		res.Disposition = "unattributed"
	}
	p.results[mac] = res
	p.order = append(p.order, mac)
	return res
}

// present returns the link's addresses by IP (computed once per link).
func (p *pass) present(index int) map[netip.Addr]*kAddr {
	if m, ok := p.addrsByLink[index]; ok {
		return m
	}
	if p.addrsByLink == nil {
		p.addrsByLink = map[int]map[netip.Addr]*kAddr{}
	}
	l := p.k.addrs[index]
	m := make(map[netip.Addr]*kAddr, len(l))
	for i := range l {
		m[l[i].prefix.Addr()] = &l[i]
	}
	p.addrsByLink[index] = m
	return m
}

func (p *pass) add(c Change) {
	p.result(c.MAC)
	p.changes = append(p.changes, c)
}

func (p *pass) fail(c Change, err error) {
	res := p.result(c.MAC)
	res.Failed = append(res.Failed, ChangeError{Change: c, Err: err})
}

// Phases: deletions first (rules, routes, addresses), then link settings,
// addresses, routes and rules, so every object exists before what needs it.
const (
	phaseDelRule = iota
	phaseDelRoute
	phaseDelAddr
	phaseLink
	phaseAddAddr
	phaseAddRoute
	phaseAddRule
)

func (r *Reconciler) compute(snap *imds.Snapshot, cfg config.Config, thorough bool) (*pass, error) {
	if r.w == nil {
		return nil, errors.New("netconf: reconciler closed")
	}
	driverFor := map[string]bool{}
	if snap != nil && cfg.MTU == config.MTUAuto {
		for _, e := range snap.ENIs {
			driverFor[e.MAC] = true
		}
	}
	k, err := r.read(driverFor)
	if err != nil {
		return nil, fmt.Errorf("netconf: read kernel: %w", err)
	}
	st, err := plan.Desired(snap, cfg, k.links)
	if err != nil {
		return nil, err
	}
	p := &pass{k: k, st: st, state: r.state.clone(), results: map[string]*ENIResult{},
		tableOwner: map[int]string{}, localOwner: map[netip.Prefix]string{}, eniByMAC: map[string]*plan.ENI{}}
	// Foreign routes are read table by table, only where they matter:
	// tables recorded or used by rules in our range (to report them), and
	// tables where a desired route is not already there as ours (a
	// foreign route may be in its way). Plan and Status, and the first
	// pass of a process, read every table ec2net uses so that foreign
	// routes are reported and logged once.
	tables := r.interestingTables(k, p.state)
	for i := range st.ENIs {
		e := &st.ENIs[i]
		if e.Table == 0 {
			continue
		}
		if thorough || !r.readAll || !ownedSatisfy(k, e) {
			tables[e.Table] = true
		} else {
			delete(tables, e.Table)
		}
	}
	if err := r.readTables(k, tables); err != nil {
		return nil, fmt.Errorf("netconf: read kernel: %w", err)
	}
	r.readAll = true
	r.diff(p)
	sort.SliceStable(p.changes, func(i, j int) bool { return p.changes[i].phase < p.changes[j].phase })
	for _, f := range p.foreign {
		if !r.reported[f] {
			r.reported[f] = true
			r.log.Info("foreign object left alone", zap.String("object", f))
		}
	}
	return p, nil
}

// interestingTables are the per-ENI tables whose routes are read in full:
// those recorded in the state and those rules in or into our range use.
func (r *Reconciler) interestingTables(k *kernel, s *stateFile) map[int]bool {
	tables := map[int]bool{}
	for _, se := range s.ENIs {
		if se.Table != 0 {
			tables[se.Table] = true
		}
	}
	for i := range k.rules {
		if t := k.rules[i].table; plan.InRange(t) {
			tables[t] = true
		}
	}
	return tables
}

// ownedSatisfy reports whether every desired route of e is already in the
// kernel as ec2net's own.
func ownedSatisfy(k *kernel, e *plan.ENI) bool {
	if e.Disposition != plan.Configure || e.Link == nil {
		return true
	}
	for _, rt := range e.Routes {
		found := false
		for i := range k.routes {
			kr := &k.routes[i]
			if kr.table == rt.Table && kr.dst == rt.Dst && kr.metric == desiredMetric(rt) && kr.tos == 0 && routeEqual(kr, rt) {
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

// removable reports whether owned objects attributed to mac that are not
// wanted may be deleted in this pass.
func (p *pass) removable(mac string) bool {
	if mac == "" {
		return !p.ambiguous
	}
	if p.k.byMAC[mac] == nil {
		// Its link is gone (detached): the kernel already dropped the
		// link's addresses and IPv4 routes; the rules and any remaining
		// routes are orphans whatever IMDS still says (it can list a
		// detached ENI for a while). That is kernel evidence, not IMDS.
		return true
	}
	if e := p.eniByMAC[mac]; e != nil {
		switch e.Disposition {
		case plan.Configure, plan.Exclude:
			return true
		}
		return false
	}
	// Not in the snapshot but its link exists: the daemon decides on
	// positive evidence; keep it configured until the link goes.
	return false
}

func (r *Reconciler) diff(p *pass) {
	k, st := p.k, p.st
	for i := range st.ENIs {
		e := &st.ENIs[i]
		p.eniByMAC[e.MAC] = e
	}
	p.attributeRecorded()
	for i := range st.ENIs {
		e := &st.ENIs[i]
		if e.Table != 0 {
			p.tableOwner[e.Table] = e.MAC
		}
		for _, rt := range e.Routes {
			if rt.Type == plan.Local {
				p.localOwner[rt.Dst] = e.MAC
			}
		}
		if e.Disposition == plan.Hold && !e.Primary {
			if se := p.state.ENIs[e.MAC]; se == nil || se.Table == 0 {
				p.ambiguous = true
			}
		}
	}

	// Desired objects of configured ENIs.
	for i := range st.ENIs {
		e := &st.ENIs[i]
		p.result(e.MAC)
		switch e.Disposition {
		case plan.Hold:
			p.notes = append(p.notes, fmt.Sprintf("%s %s: held (%s): nothing added or removed", e.MAC, e.ENIID, e.Reason))
			continue
		case plan.Exclude:
			p.notes = append(p.notes, fmt.Sprintf("%s %s: %s: only removing what ec2net added", e.MAC, e.ENIID, e.Reason))
			continue
		}
		if e.Link == nil {
			p.notes = append(p.notes, fmt.Sprintf("%s %s: no link with this MAC", e.MAC, e.ENIID))
			p.fail(Change{Op: "set", Kind: "link", MAC: e.MAC, Text: "ip link show address " + e.MAC}, ErrNoLink)
			continue
		}
		se := p.state.eni(e.MAC)
		se.ENIID, se.Table = e.ENIID, e.Table
		se.Local = nil
		for _, rt := range e.Routes {
			if rt.Type == plan.Local {
				se.Local = addString(se.Local, rt.Dst.String())
			}
		}
		r.diffLink(p, e)
		r.diffAddrs(p, e)
		r.diffRoutes(p, e)
		r.diffRules(p, e)
	}

	r.removeRules(p)
	r.removeRoutes(p)
	r.removeAddrs(p)
	r.reportForeign(p)

	// Forget ENIs whose link is gone and that IMDS no longer lists.
	for mac := range p.state.ENIs {
		if p.eniByMAC[mac] == nil && k.byMAC[mac] == nil {
			p.state.ENIs[mac].Addrs = nil // gone with the link
			p.dropIfClean = append(p.dropIfClean, mac)
			p.result(mac)
		}
	}
	sort.Strings(p.dropIfClean)
}

func (r *Reconciler) diffLink(p *pass, e *plan.ENI) {
	l := e.Link
	if e.Up && !l.Up {
		idx := l.Index
		p.add(Change{Op: "set", Kind: "link", MAC: e.MAC, Link: l.Name, phase: phaseLink,
			Text: "ip link set dev " + l.Name + " up",
			enc:  func(m *msgBuf) { encLinkUp(m, idx) }})
	}
	if e.MTU != 0 && l.MTU != e.MTU {
		idx, mtu := l.Index, e.MTU
		p.add(Change{Op: "set", Kind: "link", MAC: e.MAC, Link: l.Name, phase: phaseLink,
			Text: fmt.Sprintf("ip link set dev %s mtu %d", l.Name, mtu),
			enc:  func(m *msgBuf) { encLinkMTU(m, idx, mtu) }})
	}
	for _, n := range e.AltNames {
		if n == l.Name || containsString(l.AltNames, n) {
			continue
		}
		idx, name := l.Index, n
		p.add(Change{Op: "add", Kind: "link", MAC: e.MAC, Link: l.Name, phase: phaseLink,
			Text: "ip link property add dev " + l.Name + " altname " + name,
			enc:  func(m *msgBuf) { encAltName(m, idx, name) }})
	}
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (r *Reconciler) diffAddrs(p *pass, e *plan.ENI) {
	present := p.present(e.Link.Index)
	for _, a := range e.Addrs {
		// Present in any form (a DHCP client's, other flags, other
		// length) counts as satisfied: never delete and re-add.
		if present[a.Prefix.Addr()] != nil {
			continue
		}
		idx, dev, mac, a := e.Link.Index, e.Link.Name, e.MAC, a
		flags := 0
		if a.NoPrefixRoute {
			flags |= unix.IFA_F_NOPREFIXROUTE
		}
		if a.NoDAD {
			flags |= unix.IFA_F_NODAD
		}
		var added bool
		p.add(Change{Op: "add", Kind: "addr", MAC: mac, Link: dev, phase: phaseAddAddr,
			Text: addrText("add", a.Prefix, dev, a.NoPrefixRoute, a.NoDAD),
			enc:  func(m *msgBuf) { encAddr(m, false, idx, a.Prefix, uint32(flags)) },
			post: func(err error) error {
				added = err == nil
				if errors.Is(err, unix.EEXIST) {
					// Appeared since the dump: someone else's, satisfied.
					return nil
				}
				return err
			},
			onOK: func(s *stateFile) {
				if added {
					se := s.eni(mac)
					se.Addrs = addString(se.Addrs, a.Prefix.Addr().String())
				}
			}})
	}
}

// routeKey is a route's identity in the kernel: two routes with the same
// key cannot both exist (NLM_F_EXCL fails), whatever their next hop.
type routeKey struct {
	table  int
	dst    netip.Prefix
	metric int
}

func desiredMetric(rt plan.Route) int {
	if rt.Dst.Addr().Is6() {
		return 1024 // the kernel's default for IPv6 user routes
	}
	return 0
}

func (r *Reconciler) diffRoutes(p *pass, e *plan.ENI) {
	k := p.k
	for _, rt := range e.Routes {
		key := routeKey{rt.Table, rt.Dst, desiredMetric(rt)}
		var same, owned, foreign *kRoute
		for i := range k.routes {
			kr := &k.routes[i]
			if kr.consumed || kr.table != key.table || kr.dst != key.dst || kr.metric != key.metric || kr.tos != 0 {
				continue
			}
			if routeEqual(kr, rt) {
				same = kr
				break
			}
			if kr.proto == Protocol {
				owned = kr
			} else {
				foreign = kr
			}
		}
		rt := rt
		switch {
		case same != nil:
			same.consumed = true
		case owned != nil:
			owned.consumed = true
			p.add(Change{Op: "set", Kind: "route", MAC: e.MAC, Link: e.Link.Name, phase: phaseAddRoute,
				Text: routeText("replace", desiredRouteFields(rt)),
				enc:  func(m *msgBuf) { encRoute(m, opReplace, routeMsgOf(rt)) }})
		case foreign != nil:
			ft := routeText("", k.kRouteFields(foreign))
			p.fail(Change{Op: "add", Kind: "route", MAC: e.MAC, Link: e.Link.Name, Text: routeText("add", desiredRouteFields(rt))},
				fmt.Errorf("%w: %s", ErrForeignInTheWay, ft))
		default:
			p.add(Change{Op: "add", Kind: "route", MAC: e.MAC, Link: e.Link.Name, phase: phaseAddRoute,
				Text: routeText("add", desiredRouteFields(rt)),
				enc:  func(m *msgBuf) { encRoute(m, opAdd, routeMsgOf(rt)) }})
		}
	}
}

func routeEqual(kr *kRoute, rt plan.Route) bool {
	if kr.multi || kr.gw != rt.Gw || kr.src != rt.Src || kr.oif != rt.LinkIndex {
		return false
	}
	wantType := unix.RTN_UNICAST
	if rt.Type == plan.Local {
		wantType = unix.RTN_LOCAL
	}
	if kr.typ != wantType {
		return false
	}
	// IPv6 has no route scopes; the kernel reports universe.
	return kr.family == 6 || kr.scope == int(rt.Scope)
}

func routeMsgOf(rt plan.Route) routeMsg {
	m := routeMsg{table: rt.Table, proto: Protocol, scope: int(rt.Scope), typ: unix.RTN_UNICAST, oif: rt.LinkIndex,
		dst: rt.Dst, gw: rt.Gw, src: rt.Src}
	if rt.Type == plan.Local {
		m.typ = unix.RTN_LOCAL
	}
	if rt.Dst.Addr().Is6() {
		m.scope = unix.RT_SCOPE_UNIVERSE // IPv6 has no route scopes
	}
	return m
}

// ruleKey is what makes a simple rule equal to a desired one. Plain
// bytes rather than netip.Prefix so that the map hashes memory, not a
// structure with a pointer in it: thousands of rules go through it per
// pass.
type ruleKey struct {
	src         [16]byte
	bits        uint8
	family      uint8
	prio, table int32
}

func makeRuleKey(family, prio, table int, src netip.Prefix) ruleKey {
	k := ruleKey{family: uint8(family), prio: int32(prio), table: int32(table), bits: 255}
	if src.IsValid() {
		k.src = src.Addr().As16()
		k.bits = uint8(src.Bits())
	}
	return k
}

// ruleIndex maps a rule key to the first kernel rule with it; nextRule
// chains duplicates.
func (p *pass) ruleIndex() map[ruleKey]int {
	if p.rulesByKey == nil {
		p.rulesByKey = make(map[ruleKey]int, len(p.k.rules))
		p.nextRule = make([]int, len(p.k.rules))
		for i := len(p.k.rules) - 1; i >= 0; i-- {
			kr := &p.k.rules[i]
			p.nextRule[i] = -1
			if !kr.simple {
				continue
			}
			key := makeRuleKey(kr.family, kr.prio, kr.table, kr.src)
			if j, ok := p.rulesByKey[key]; ok {
				p.nextRule[i] = j
			}
			p.rulesByKey[key] = i
		}
	}
	return p.rulesByKey
}

func (r *Reconciler) diffRules(p *pass, e *plan.ENI) {
	idx := p.ruleIndex()
	for _, ru := range e.Rules {
		fam := ru.Family()
		found := false
		i, ok := idx[makeRuleKey(fam, ru.Priority, ru.Table, ru.Src)]
		for ok && i >= 0 {
			if kr := &p.k.rules[i]; !kr.consumed {
				kr.consumed = true
				found = true
				break
			}
			i = p.nextRule[i]
		}
		if found {
			continue
		}
		ru := ru
		p.add(Change{Op: "add", Kind: "rule", MAC: e.MAC, Link: e.Link.Name, phase: phaseAddRule,
			Text: ruleText("add", fam, ru.Priority, ru.Src, ru.Table, Protocol),
			enc:  func(m *msgBuf) { encRule(m, false, fam, ru.Priority, ru.Table, ru.Src, Protocol) }})
	}
}

func (r *Reconciler) removeRules(p *pass) {
	for i := range p.k.rules {
		kr := &p.k.rules[i]
		if kr.consumed || kr.proto != Protocol {
			continue
		}
		mac := p.tableOwner[kr.table]
		if !p.removable(mac) {
			continue
		}
		p.add(delRuleChange(p.k, kr, mac))
	}
}

func delRuleChange(k *kernel, kr *kRule, mac string) Change {
	link := ""
	if l := k.byMAC[mac]; l != nil && mac != "" {
		link = l.Name
	}
	fam, prio, table, src, proto := kr.family, kr.prio, kr.table, kr.src, kr.proto
	return Change{Op: "del", Kind: "rule", MAC: mac, Link: link, phase: phaseDelRule,
		Text: ruleText("del", kr.family, kr.prio, kr.src, kr.table, kr.proto),
		// The protocol is part of the request: the kernel then deletes
		// only a rule carrying it, never a foreign twin.
		enc: func(m *msgBuf) { encRule(m, true, fam, prio, table, src, proto) },
		post: func(err error) error {
			if errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		}}
}

func (r *Reconciler) removeRoutes(p *pass) {
	// Routes through a gateway first: they depend on the subnet route.
	for _, withGw := range []bool{true, false} {
		for i := range p.k.routes {
			kr := &p.k.routes[i]
			if kr.consumed || kr.proto != Protocol || kr.gw.IsValid() != withGw {
				continue
			}
			var mac string
			if kr.table == plan.TableLocal {
				mac = p.localOwner[kr.dst]
			} else {
				mac = p.tableOwner[kr.table]
			}
			if !p.removable(mac) {
				continue
			}
			p.add(delRouteChange(p.k, kr, mac))
		}
	}
}

func delRouteChange(k *kernel, kr *kRoute, mac string) Change {
	link := ""
	if l := k.byMAC[mac]; l != nil && mac != "" {
		link = l.Name
	}
	// The protocol, table, type and scope are in the request: the kernel
	// deletes only the route that matches them all.
	rm := routeMsg{table: kr.table, proto: kr.proto, scope: kr.scope, typ: kr.typ, tos: kr.tos, metric: kr.metric,
		oif: kr.oif, dst: kr.dst, gw: kr.gw}
	if kr.multi {
		rm.oif, rm.gw = 0, netip.Addr{}
	}
	dst, table := kr.dst, kr.table
	return Change{Op: "del", Kind: "route", MAC: mac, Link: link, phase: phaseDelRoute,
		Text: routeText("del", k.kRouteFields(kr)),
		enc:  func(m *msgBuf) { encRoute(m, opDel, rm) },
		post: func(err error) error {
			if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		},
		onOK: func(s *stateFile) {
			if table == plan.TableLocal && mac != "" {
				if se := s.ENIs[mac]; se != nil {
					se.Local = removeString(se.Local, dst.String())
				}
			}
		}}
}

// removeAddrs deletes owned addresses that are not wanted and forgets
// recorded addresses that are no longer on the link.
func (r *Reconciler) removeAddrs(p *pass) {
	macs := make([]string, 0, len(p.state.ENIs))
	for mac := range p.state.ENIs {
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	for _, mac := range macs {
		se := p.state.ENIs[mac]
		l := p.k.byMAC[mac]
		if l == nil {
			continue // link gone: handled with the orphans
		}
		var want map[netip.Addr]bool
		if e := p.eniByMAC[mac]; e != nil && e.Disposition == plan.Configure {
			want = make(map[netip.Addr]bool, len(e.Addrs))
			for _, a := range e.Addrs {
				want[a.Prefix.Addr()] = true
			}
		}
		onLink := p.present(l.Index)
		removable := p.removable(mac)
		var forget []string
		for _, s := range se.Addrs {
			ip, err := netip.ParseAddr(s)
			if err != nil {
				forget = append(forget, s)
				continue
			}
			ka := onLink[ip]
			if ka == nil {
				if !want[ip] {
					forget = append(forget, s) // someone removed it
				}
				continue
			}
			if want[ip] || !removable {
				continue
			}
			p.add(delOwnedAddr(mac, l.Name, l.Index, ka.prefix, s))
		}
		for _, s := range forget {
			se.Addrs = removeString(se.Addrs, s)
		}
	}
}

func (r *Reconciler) reportForeign(p *pass) {
	k := p.k
	for i := range k.rules {
		kr := &k.rules[i]
		if kr.proto != Protocol && (plan.InRange(kr.prio) || plan.InRange(kr.table)) {
			p.foreign = append(p.foreign, foreignRuleText(kr))
		}
	}
	for i := range k.routes {
		kr := &k.routes[i]
		if kr.proto != Protocol && plan.InRange(kr.table) {
			p.foreign = append(p.foreign, strings.Replace(routeText("", k.kRouteFields(kr)), "route  ", "route ", 1))
		}
	}
	// Foreign routes blocking a desired one are failures of their ENI and
	// listed here too, so that `plan` shows them.
	for _, mac := range p.order {
		for _, f := range p.results[mac].Failed {
			if errors.Is(f.Err, ErrForeignInTheWay) {
				s := f.Err.Error()
				if !containsString(p.foreign, s) {
					p.foreign = append(p.foreign, s)
				}
			}
		}
	}
}

// delOwnedAddr is the change that deletes an address ec2net added and, once
// it is gone, forgets it in the state file. Already gone counts as done.
func delOwnedAddr(mac, link string, index int, pf netip.Prefix, s string) Change {
	return Change{Op: "del", Kind: "addr", MAC: mac, Link: link, phase: phaseDelAddr,
		Text: addrText("del", pf, link, false, false),
		enc:  func(m *msgBuf) { encAddr(m, true, index, pf, 0) },
		post: func(err error) error {
			if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) {
				return nil
			}
			return err
		},
		onOK: func(st *stateFile) {
			if e := st.ENIs[mac]; e != nil {
				e.Addrs = removeString(e.Addrs, s)
			}
		}}
}

// attributeRecorded attributes tables and local routes to the ENIs the
// state file says they were created for.
func (p *pass) attributeRecorded() {
	for mac, se := range p.state.ENIs {
		if se.Table != 0 {
			p.tableOwner[se.Table] = mac
		}
		for _, s := range se.Local {
			if pf, err := netip.ParsePrefix(s); err == nil {
				p.localOwner[pf] = mac
			}
		}
	}
}
