package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/hostcheck"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/logging"
	"github.com/ec2net/ec2net/agent/metrics"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
)

// publisher is what the daemon tells the outside: the runtime file
// (runtime.go), the metrics file and listener (agent/metrics), and the
// path-verified state of every ENI, re-checked shortly after each read
// and reconcile (at most once per verifyEvery) with one log line per ENI
// whose path breaks or heals. It lives in the loop goroutine; the loop
// calls reconciled and read after each event and verify when verifyC
// fires.
type publisher struct {
	stateDir string
	cfg      config.Config
	log      *zap.Logger
	rt       Runtime
	m        *metrics.Metrics
	imds     func() imds.Stats
	status   statuser // nil: the namespace cannot verify (test fakes)
	stop     func()   // the metrics listener's

	timer         *time.Timer
	armed         bool
	lastVerify    time.Time
	states        map[string]netconf.State // MAC -> path-verified state at the last verification
	warned        map[string]bool          // file write failures already logged
	hostSeen      map[string]bool          // host problems (hostcheck) logged, by check and link
	hostLinks     string                   // the ENI links at the last host check
	hostCheckedAt time.Time                // when the host was last checked
	ns            netns.NsHandle           // the daemon's namespace, where links are read
}

// statuser is the namespace's path-verified status (*netconf.Reconciler).
type statuser interface {
	Status(*imds.Snapshot, config.Config) ([]netconf.ENIStatus, error)
}

// Verification follows an event by verifyDelay (a burst settles first)
// and runs at most once per verifyEvery; the host check (files, process
// list) at most once per hostCheckEvery unless the ENI links change.
const (
	hostCheckEvery = time.Minute
	verifyDelay    = 200 * time.Millisecond
	verifyEvery    = time.Second
)

func newPublisher(o Options) *publisher {
	now := time.Now()
	p := &publisher{stateDir: o.Reconciler.StateDir(), cfg: o.Config, log: o.Logger, rt: newRuntime(o.Version, now),
		timer: stoppedTimer(), states: map[string]netconf.State{}, warned: map[string]bool{}, hostSeen: map[string]bool{},
		ns: o.NetNS}
	if s, ok := o.IMDS.(interface{ Stats() imds.Stats }); ok {
		p.imds = s.Stats
	}
	p.m = metrics.New(o.Version, now, p.imds)
	if c, ok := o.IMDS.(interface{ SetLatencyObserver(func(time.Duration)) }); ok {
		c.SetLatencyObserver(p.m.ObserveIMDS)
	}
	p.status, _ = o.Reconciler.(statuser)
	return p
}

// start opens the metrics listener (when configured) and publishes.
func (p *publisher) start() {
	if addr := p.cfg.MetricsListen; addr != "" {
		stop, err := p.m.Serve(addr)
		if err != nil {
			p.log.Error("metrics listener not started", zap.String("listen", addr), zap.Error(err))
		} else {
			p.stop = stop
			p.log.Info("serving metrics", zap.String("url", "http://"+addr+"/metrics"))
		}
	}
	p.write()
}

// close stops the listener and publishes that the daemon stopped.
func (p *publisher) close() {
	p.timer.Stop()
	if p.stop != nil {
		p.stop()
	}
	p.rt.Stopped = time.Now()
	p.write()
}

// verifyC fires when a verification is due.
func (p *publisher) verifyC() <-chan time.Time { return p.timer.C }

// reconciled records a pass: its trigger, its failures, and for a repair
// what it restored.
func (p *publisher) reconciled(trigger string, res *netconf.Result, err error) {
	now := time.Now()
	failure := ""
	if err != nil {
		failure = err.Error()
	} else if res != nil {
		for _, e := range res.ENIs {
			for _, f := range e.Failed {
				if !errors.Is(f.Err, netconf.ErrNoLink) {
					failure = f.Change.Text() + ": " + f.Err.Error()
				}
			}
		}
	}
	p.rt.Reconciles[trigger]++
	if failure != "" {
		p.rt.ReconcileFailures[trigger]++
	}
	p.rt.LastReconcile, p.rt.LastTrigger, p.rt.LastFailure = now, trigger, failure
	p.m.Reconciled(trigger, failure != "", now)
	if trigger == "repair" && res != nil {
		p.repaired(res, now)
	}
	p.schedule(now)
	p.write()
}

func (p *publisher) repaired(res *netconf.Result, now time.Time) {
	n := 0
	for _, e := range res.ENIs {
		for _, c := range e.Applied {
			if c.Op != netconf.OpDel {
				p.rt.Repairs[c.Kind.String()]++
				p.m.Repaired(c.Kind.String(), 1)
				n++
			}
		}
	}
	if n > 0 {
		p.rt.noteRepair(now)
	}
}

// read records an IMDS read.
func (p *publisher) read(err error) {
	now := time.Now()
	if err != nil {
		p.rt.ReadsFailed++
		p.rt.LastReadFailed, p.rt.LastReadError = now, err.Error()
	} else {
		p.rt.ReadsOK++
		p.rt.LastRead, p.rt.LastReadError = now, ""
	}
	p.m.Read(err == nil, now)
	p.write()
}

func (p *publisher) schedule(now time.Time) {
	if p.status == nil || p.armed {
		return
	}
	p.armed = true
	arm(p.timer, max(verifyDelay, verifyEvery-now.Sub(p.lastVerify)))
}

// verify checks every address's path against snap (the last converged
// snapshot), updates the ENI gauges and logs each ENI whose path broke or
// healed since the last verification.
func (p *publisher) verify(snap *imds.Snapshot, cfg config.Config) {
	p.armed = false
	if p.status == nil || snap == nil {
		return
	}
	now := time.Now()
	p.lastVerify = now
	rows, err := p.status.Status(snap, cfg)
	if err != nil {
		p.log.Warn("cannot verify the paths of the addresses", zap.Error(err))
		return
	}
	p.m.SetStatus(rows, now)
	counts := map[string]int{}
	seen := map[string]bool{}
	for i := range rows {
		r := &rows[i]
		counts[r.State.String()]++
		seen[r.MAC] = true
		p.logPathChange(r)
	}
	for mac := range p.states {
		if !seen[mac] {
			delete(p.states, mac)
		}
	}
	p.rt.ENIs, p.rt.LastVerified = counts, now
	p.checkHost(rows, cfg, now)
	p.write()
}

// checkHost logs each competing network manager problem once, with its
// fix (again if it goes away and comes back). Only the managers' checks:
// the path verification already covers what the kernel does. It reads
// configuration files and the process list, which change rarely: it runs
// at most once per hostCheckEvery, or when the ENIs' links change. The
// links' drivers and indexes (networkd matches by driver; its state is
// by index) are read in the daemon's namespace.
func (p *publisher) checkHost(rows []netconf.ENIStatus, cfg config.Config, now time.Time) {
	h := hostcheck.For(rows, cfg.MTU == config.MTUKeep, cfg.SecondaryENIs == config.SecondaryNone)
	var links []string
	for _, l := range h.ENIs {
		links = append(links, l.Name)
	}
	key := strings.Join(links, " ")
	if key == p.hostLinks && now.Sub(p.hostCheckedAt) < hostCheckEvery {
		return
	}
	p.hostLinks, p.hostCheckedAt = key, now
	_ = nsutil.Do(p.ns, func() error { return hostcheck.Collect(&h) }) // what cannot be read stays unknown
	seen := map[string]bool{}
	for _, f := range hostcheck.Managers(h) {
		if f.Severity != hostcheck.Problem {
			continue
		}
		key := f.Check + "/" + f.Link
		seen[key] = true
		if !p.hostSeen[key] {
			p.log.Warn(f.Text, zap.String("check", f.Check), zap.String("link", f.Link), zap.String("fix", f.Fix),
				logging.ID(logging.MsgHostCheck))
		}
	}
	p.hostSeen = seen
}

// suspects names the competing network managers found with a problem:
// who probably deleted what a repair restored.
func (p *publisher) suspects() string {
	var checks []string
	for key := range p.hostSeen {
		check, _, _ := strings.Cut(key, "/")
		if !slices.Contains(checks, check) {
			checks = append(checks, check)
		}
	}
	slices.Sort(checks)
	return strings.Join(checks, ", ")
}

func pathBroken(s netconf.State) bool {
	switch s {
	case netconf.StateShadowed, netconf.StateWrongPath, netconf.StateDown, netconf.StateRPFilter:
		return true
	}
	return false
}

func (p *publisher) logPathChange(r *netconf.ENIStatus) {
	old, known := p.states[r.MAC]
	p.states[r.MAC] = r.State
	if known && old == r.State {
		return
	}
	fields := []zap.Field{zap.String("link", r.Link), zap.String("mac", r.MAC), zap.String("eni", r.ENIID),
		zap.String("state", r.State.String())}
	switch {
	case pathBroken(r.State):
		p.log.Warn("address off its path: "+r.Reason, append(fields, logging.ID(logging.MsgPathBroken))...)
	case known && pathBroken(old) && r.State == netconf.StateConfigured:
		p.log.Info("every address back on its path", append(fields, zap.String("was", old.String()),
			logging.ID(logging.MsgPathRestored))...)
	}
}

// write publishes the runtime file and the metrics file. A failure is
// logged once per file until it succeeds again: the daemon's work does
// not depend on it.
func (p *publisher) write() {
	p.rt.Updated = time.Now()
	if p.imds != nil {
		p.rt.IMDS = p.imds()
	}
	p.report("runtime", writeRuntime(p.stateDir, &p.rt))
	p.report("metrics", writeMetrics(p.m, MetricsFile(p.stateDir)))
}

// writeMetrics writes the metrics file, making its directory readable by
// everyone (the unit's umask would make it root's only).
func writeMetrics(m *metrics.Metrics, path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	return m.WriteFile(path)
}

func (p *publisher) report(what string, err error) {
	switch {
	case err != nil && !p.warned[what]:
		p.warned[what] = true
		p.log.Warn("cannot write the "+what+" file", zap.Error(err))
	case err == nil:
		delete(p.warned, what)
	}
}
