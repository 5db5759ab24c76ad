package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/converge"
	"github.com/ec2net/ec2net/agent/evidence"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"go.uber.org/zap"
)

// loop is the daemon's one goroutine and all its state.
type loop struct {
	o    Options
	cfg  config.Config
	log  *zap.Logger
	sigs <-chan os.Signal
	wg   *sync.WaitGroup

	tracker   *evidence.Tracker
	raw       *imds.Snapshot // the last read as IMDS said it (partial reads build on it)
	last      *imds.Snapshot // the snapshot last converged to, evidence applied
	links     *linkTracker
	states    map[string]imds.ENIState // MAC -> state in the last read, to log changes only
	noLink    map[string]bool          // MACs listed without a link, logged once
	adminDown map[string]bool          // MACs whose link an administrator set down, logged once

	reads   readQueue
	repairs *repairPolicy
	cutoff  *cutoffGuard
	demand  *demand
	peeks   *peekSchedule // how often pending ENIs are peeked at
	pub     *publisher    // what status, doctor and Prometheus read (publish.go)

	refresh, retry, poll, repair, check, readyBy *time.Timer
	retryReq                                     readReq // what the retry timer reads
	ready                                        bool
	lastErr                                      string // last IMDS error class logged, so an outage logs once
	lastStatus                                   string
	resolved                                     string        // secondary-enis as last decided
	resolvedCfg                                  config.Config // config with secondary-enis decided (config())
	resolvedOK                                   bool          // resolvedCfg is current
	wedged                                       bool
}

func newLoop(o Options, sigs <-chan os.Signal, wg *sync.WaitGroup) *loop {
	l := &loop{
		o: o, cfg: o.Config, log: o.Logger, sigs: sigs, wg: wg,
		tracker:   evidence.New(o.Config.RemoveAfter, o.Config.RemoveAfterTime),
		links:     newLinkTracker(o.Config.PropagationWait),
		states:    map[string]imds.ENIState{},
		noLink:    map[string]bool{},
		adminDown: map[string]bool{},
		reads:     newReadQueue(),
		repairs:   newRepairPolicy(),
		cutoff:    newCutoffGuard(),
		demand:    newDemand(o.Counters),
		peeks:     newPeekSchedule(),
		pub:       newPublisher(o),
	}
	l.repairs.suspect = func(netconf.Deleted) string { return l.pub.suspects() }
	return l
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// arm resets t to fire after d (a stopped or fired timer is re-armed).
func arm(t *time.Timer, d time.Duration) { t.Reset(max(d, 0)) }

// run is the loop: set-up, then one select whose cases each call one
// handler; its length is the list of what the daemon waits for.
func (l *loop) run(ctx context.Context, ev Events) error {
	l.refresh = time.NewTimer(jitter(l.cfg.RefreshInterval))
	l.retry, l.poll, l.repair, l.check = stoppedTimer(), stoppedTimer(), stoppedTimer(), stoppedTimer()
	l.readyBy = time.NewTimer(l.cfg.ReadyTimeout)
	defer func() {
		for _, t := range []*time.Timer{l.refresh, l.retry, l.poll, l.repair, l.check, l.readyBy} {
			t.Stop()
		}
		ev.Close()
	}()
	demandTick := time.NewTicker(demandPoll)
	defer demandTick.Stop()
	var watchdog <-chan time.Time
	if interval, err := daemon.SdWatchdogEnabled(false); err == nil && interval > 0 {
		t := time.NewTicker(interval / 3)
		defer t.Stop()
		watchdog = t.C
		l.o.Notify("WATCHDOG=1")
	}

	l.log.Info("ec2net starting", zap.String("version", l.o.Version), zap.Duration("refresh", l.cfg.RefreshInterval))
	l.pub.start()
	defer l.pub.close()
	// Links that exist now are not "new": their next event (say, our own
	// link-up) must not look like an attach.
	if links, err := l.o.Reconciler.Links(); err == nil {
		l.links.seed(links)
	}
	l.startRead(ctx, readReq{full: true}, &l.reads.main)

	for {
		select {
		case <-ctx.Done():
			l.o.Notify("STOPPING=1")
			l.log.Info("ec2net stopping; configuration left in place")
			return nil
		case <-watchdog:
			if !l.wedged {
				l.o.Notify("WATCHDOG=1")
			}
		case <-l.readyBy.C:
			l.onReadyDeadline()
		case s := <-l.sigs:
			if l.onSignal(ctx, s) {
				return nil
			}
		case <-l.refresh.C:
			arm(l.refresh, jitter(l.cfg.RefreshInterval))
			l.resolvedOK = false // the VPC CNI's file or rules may have come or gone
			l.requestRead(ctx, readReq{macs: l.links.linkedMACs(l.raw)})
		case <-l.retry.C:
			l.requestRead(ctx, l.retryReq)
		case <-l.poll.C:
			l.requestRead(ctx, readReq{peek: true, attach: true}) // pending ENIs: beside a slow refresh
		case now := <-demandTick.C:
			if l.last != nil && l.demand.poll(now) {
				l.requestRead(ctx, readReq{macs: l.links.linkedMACs(l.raw), demand: true})
			}
		case <-l.check.C:
			l.requestRead(ctx, readReq{}) // the listing alone: does IMDS still answer?
		case <-l.repair.C:
			l.onRepair()
		case <-l.pub.verifyC():
			l.pub.verify(l.cutoff.filter(l.last), l.config()) // as applied: held ENIs are held
		case r := <-l.reads.results:
			l.onRead(ctx, r)
		case <-ev.LinksChanged():
			l.onLinks(ctx)
		case <-ev.Deletions():
			l.onDeletions(ev.TakeDeleted())
		case <-ev.Done():
			next, err := l.onEventsLost(ctx, ev)
			if err != nil {
				return err
			}
			ev = next
		}
	}
}

func (l *loop) onReadyDeadline() {
	if !l.ready {
		l.log.Warn("IMDS has not answered: reporting ready, degraded", zap.Duration("after", l.cfg.ReadyTimeout))
		l.sendReady("degraded: IMDS not answering yet")
	}
}

// onSignal handles SIGHUP (refresh now) and the SIGUSR2 test hook; true
// means stop.
func (l *loop) onSignal(ctx context.Context, s os.Signal) bool {
	switch s {
	case syscall.SIGHUP:
		l.log.Info("SIGHUP: refreshing now")
		l.requestRead(ctx, readReq{full: true})
	case syscall.SIGUSR2:
		if os.Getenv("EC2NET_TEST_HOOKS") == "1" {
			// Test hook: wedge the main loop so the systemd watchdog must
			// kill and restart us.
			l.log.Warn("test hook: wedging the main loop")
			l.wedged = true
			<-ctx.Done()
			return true
		}
	}
	return false
}

// onLinks re-reads the links once per burst of link events: a new link
// (attach, re-attach) needs an IMDS read, a gone one (detach) a reconcile
// now (its orphaned rules and routes), a rename or flag change a
// reconcile (restore what the ENI needs).
func (l *loop) onLinks(ctx context.Context) {
	l.resolvedOK = false // a pod veth may have come or gone
	links, err := l.o.Reconciler.Links()
	if err != nil {
		l.log.Warn("cannot list links", zap.Error(err))
		return
	}
	ch := l.links.update(links, time.Now())
	for _, g := range ch.gone {
		l.o.IMDS.Forget(g.MAC)
		l.tracker.Forget(g.MAC)
		l.log.Info("link removed (ENI detached)", zap.String("link", g.Name), zap.String("mac", g.MAC))
	}
	var macs []string
	for _, a := range ch.appeared {
		l.log.Info("link appeared", zap.String("link", a.Name), zap.String("mac", a.MAC))
		macs = append(macs, a.MAC)
		delete(l.noLink, a.MAC)
	}
	if len(ch.gone) > 0 || ch.changed {
		l.apply("link change")
	}
	if len(macs) > 0 {
		// Just the new ENI (and the listing): a slow key elsewhere must
		// not hold up its configuration.
		l.requestRead(ctx, readReq{macs: macs, attach: true})
	}
}

// onDeletions schedules a repair: a no-change apply costs one dump and no
// writes, so any deletion simply leads to a reconcile, soon for a one-off,
// later while another program keeps deleting what was just restored.
func (l *loop) onDeletions(d netconf.Deleted) {
	l.repairs.deleted(d)
	if l.last == nil || l.repairs.armed {
		return
	}
	l.repairs.armed = true
	arm(l.repair, l.repairs.delay())
}

func (l *loop) onRepair() {
	l.repairs.armed = false
	res := l.apply("repair")
	if res != nil {
		l.repairs.repaired(time.Now(), res, l.log)
	}
}

// onEventsLost replaces a failed subscription: events may have been lost
// (ENOBUFS after an event storm), so everything is re-read rather than
// trusted.
func (l *loop) onEventsLost(ctx context.Context, old Events) (Events, error) {
	if ctx.Err() != nil {
		return old, nil
	}
	l.log.Warn("netlink event subscription ended; resubscribing and re-reading", zap.Error(old.Err()))
	l.resolvedOK = false
	old.Close()
	ev, err := l.o.Watch()
	if err != nil {
		return nil, fmt.Errorf("resubscribe to netlink events: %w", err)
	}
	l.onLinks(ctx)
	l.apply("events lost")
	l.requestRead(ctx, readReq{full: true})
	return ev, nil
}

// apply converges the kernel to the last snapshot and logs what changed.
func (l *loop) apply(why string) *netconf.Result {
	if l.last == nil {
		return nil
	}
	res, err := l.o.Reconciler.Apply(l.cutoff.filter(l.last), l.config())
	l.pub.reconciled(why, res, err)
	if err != nil {
		l.log.Error("reconcile failed", zap.String("trigger", why), zap.Error(err))
		l.setStatus("degraded: " + err.Error())
		return nil
	}
	l.logResult(why, res)
	if l.cutoff.applied(res, time.Now()) {
		arm(l.check, cutoffCheck)
	}
	l.setStatus(summary(res))
	return res
}

func (l *loop) logResult(why string, res *netconf.Result) {
	for _, e := range res.ENIs {
		if e.AdminDown != l.adminDown[e.MAC] {
			l.adminDown[e.MAC] = e.AdminDown
			if e.AdminDown {
				l.log.Info("link set down by an administrator after ec2net brought it up: left down; its addresses and rules are kept",
					zap.String("link", e.Link), zap.String("mac", e.MAC))
			} else {
				l.log.Info("link up again", zap.String("link", e.Link), zap.String("mac", e.MAC))
			}
		}
		for _, c := range e.Applied {
			if why == "repair" && c.Op != netconf.OpDel {
				continue // a repair burst is logged once, as a whole
			}
			msg := "configured"
			if c.Op == netconf.OpDel {
				msg = "removed"
			}
			l.log.Info(msg, zap.String("link", e.Link), zap.String("mac", e.MAC), zap.String("eni", e.ENIID), zap.String("change", c.Text()))
		}
		for _, f := range e.Failed {
			if errors.Is(f.Err, netconf.ErrNoLink) {
				// The expected end of a detach while IMDS still lists the
				// ENI (or an attach before its link appears): not an error.
				if !l.noLink[e.MAC] {
					l.noLink[e.MAC] = true
					l.log.Info("ENI listed in IMDS but no link has its MAC here (detached, or not attached yet)", zap.String("mac", e.MAC), zap.String("eni", e.ENIID))
				}
				continue
			}
			l.log.Error("change failed", zap.String("link", e.Link), zap.String("mac", e.MAC), zap.String("change", f.Change.Text()), zap.Error(f.Err))
		}
	}
}

func (l *loop) sendReady(status string) {
	l.ready = true
	if status == "" {
		status = l.lastStatus
	}
	l.lastStatus = status
	l.o.Notify("READY=1\nSTATUS=" + status)
	if l.o.Ready != nil {
		close(l.o.Ready)
		l.o.Ready = nil
	}
}

func (l *loop) setStatus(s string) {
	if s == l.lastStatus {
		return
	}
	l.lastStatus = s
	l.o.Notify("STATUS=" + s)
}

// config is the configuration with secondary-enis = auto decided now:
// the VPC CNI can arrive after boot (it attaches its ENIs later), and from
// then on the secondary ENIs are its own.
// config is the configuration with secondary-enis = auto decided. The
// decision (a glob and a rule and link dump) is kept, not redone for every
// read, peek and pass: it is taken again only when what it looks at may
// have changed (link events, each refresh, lost events).
func (l *loop) config() config.Config {
	if l.resolvedOK {
		return l.resolvedCfg
	}
	cfg, signs, err := converge.Resolve(l.cfg, l.o.Reconciler)
	if err != nil {
		// Undecided: keep the last decision (tried again at the next
		// call); before any, the kernel's own dumps fail the pass too.
		l.log.Warn("cannot decide secondary-enis = auto now; keeping the last decision", zap.Error(err))
		if l.resolved != "" {
			return l.resolvedCfg
		}
		return cfg
	}
	l.resolvedCfg, l.resolvedOK = cfg, true
	if cfg.SecondaryENIs != l.resolved {
		if l.resolved != "" || cfg.SecondaryENIs == config.SecondaryNone {
			if cfg.SecondaryENIs == config.SecondaryNone {
				l.log.Warn("the Amazon VPC CNI manages this host's secondary ENIs: configuring the primary ENI only (secondary-enis = auto; set all or none to decide)",
					zap.Strings("signs", signs))
			} else {
				l.log.Info("no sign of the VPC CNI any more: configuring every ENI (secondary-enis = auto)")
			}
		}
		l.resolved = cfg.SecondaryENIs
	}
	return cfg
}

// rollBack undoes the last change when IMDS stopped answering right
// after it (cutoff.go).
func (l *loop) rollBack() {
	undo := l.cutoff.rollback(l.raw)
	res, err := l.o.Reconciler.Revert(undo)
	if err != nil {
		l.log.Error("rolling back the last change failed", zap.Error(err))
		return
	}
	var macs []string
	for _, e := range res.ENIs {
		macs = append(macs, e.MAC)
	}
	l.log.Error("IMDS stopped answering right after ec2net changed the routing: rolled back that change; its ENIs are held until IMDS answers",
		zap.Int("changes", res.Writes), zap.Strings("macs", macs))
}

// jitter spreads d by ±10 % so that a fleet does not read IMDS in step.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return time.Duration(float64(d) * (0.9 + 0.2*rand.Float64()))
}

// jitterUp lengthens d by up to 10 % (never shortens it: the evidence
// rule needs at least d).
func jitterUp(d time.Duration) time.Duration {
	d = max(d, 0)
	return d + time.Duration(0.1*rand.Float64()*float64(d))
}
