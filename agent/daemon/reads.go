package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ec2net/ec2net/agent/converge"
	"github.com/ec2net/ec2net/agent/evidence"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/plan"
	"go.uber.org/zap"
)

// readReq says what a read reads. The cheapest read that answers the
// question: a full snapshot only at start, on SIGHUP and after a failure;
// otherwise the listing plus the named ENIs (imds.Client.ReadENIs), and
// for ENIs still propagating one request each for the key they wait on
// (imds.Client.Peek), with a read only of those whose key changed.
type readReq struct {
	full   bool
	macs   []string // read these ENIs (with the listing)
	peek   bool     // peek at the pending ENIs with a link first
	attach bool     // for a new link: may run beside a slower read
	demand bool     // asked for by stray packets (demand.go)
}

// merge folds a request asked for while a read is under way into the one
// that runs next.
func (r *readReq) merge(o readReq) {
	r.full = r.full || o.full
	r.peek = r.peek || o.peek
	r.attach = r.attach && o.attach
	r.demand = r.demand || o.demand
	for _, m := range o.macs {
		if !slices.Contains(r.macs, m) {
			r.macs = append(r.macs, m)
		}
	}
}

type readResult struct {
	raw     *imds.Snapshot // as IMDS said (the base of the next partial read)
	snap    *imds.Snapshot // with the evidence rule applied
	err     error
	lane    *lane
	started time.Time
	full    bool     // every ENI was read
	macs    []string // else, the ENIs that were read
	demand  bool     // the read was asked for by stray packets
}

// errNoChange: every pending ENI peeked at is still waiting on the same
// value; nothing was read.
var errNoChange = errors.New("no pending ENI changed")

// readQueue runs IMDS reads in two lanes of one read at a time: reads
// asked for while its lane is busy are merged and run once after it. The
// attach lane takes a new link's read when the main lane is busy (a
// refresh slowed by one trickling key must not hold up another ENI's
// configuration); merge.go folds results that arrive out of order.
type readQueue struct {
	main, attach lane
	fresh        freshness
	results      chan readResult
	pending      *imds.Backoff // blind re-reads while an ENI propagates without a key to peek at
	failing      *imds.Backoff // re-reads while IMDS fails
}

type lane struct {
	busy bool
	next *readReq
}

func newReadQueue() readQueue {
	return readQueue{
		results: make(chan readResult, 2),
		pending: imds.NewBackoff(imds.BackoffConfig{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}),
		failing: imds.NewBackoff(imds.BackoffConfig{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}),
	}
}

func (l *loop) requestRead(ctx context.Context, req readReq) {
	ln := &l.reads.main
	if req.attach && ln.busy && l.raw != nil {
		ln = &l.reads.attach
	}
	if ln.busy {
		if ln.next == nil {
			ln.next = &readReq{attach: req.attach}
		}
		ln.next.merge(req)
		return
	}
	l.startRead(ctx, req, ln)
}

// startRead runs one read in a worker, with the evidence rule applied
// (removals it cannot yet prove are held in the tracker).
func (l *loop) startRead(ctx context.Context, req readReq, ln *lane) {
	ln.busy = true
	prev, cfg := l.raw, l.config()
	res := readResult{lane: ln, started: time.Now(), demand: req.demand}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		read := func(ctx context.Context) (*imds.Snapshot, error) {
			var err error
			res.raw, res.full, res.macs, err = l.read(ctx, req, prev)
			return res.raw, err
		}
		res.snap, res.err = converge.Read(ctx, l.o.IMDS, l.o.Reconciler, converge.Options{
			Config: cfg, Tracker: l.tracker, HoldRemovals: true, Read: read})
		select {
		case l.reads.results <- res:
		case <-ctx.Done():
		}
	}()
}

// read does one request's reads (in a worker) and says which ENIs it read.
func (l *loop) read(ctx context.Context, req readReq, prev *imds.Snapshot) (*imds.Snapshot, bool, []string, error) {
	if req.full || prev == nil {
		s, err := l.o.IMDS.Snapshot(ctx)
		return s, true, nil, err
	}
	macs := slices.Clone(req.macs)
	if req.peek {
		for i := range prev.ENIs {
			e := &prev.ENIs[i]
			if changed, err := l.o.IMDS.Peek(ctx, e); err == nil && changed && !slices.Contains(macs, e.MAC) {
				macs = append(macs, e.MAC)
			}
		}
		if len(macs) == 0 {
			return nil, false, nil, errNoChange
		}
	}
	snap, err := l.o.IMDS.ReadENIs(ctx, prev, macs)
	if err == nil && listsNew(snap, prev, macs) {
		// A MAC the partial read did not know: read everything once.
		s, err := l.o.IMDS.Snapshot(ctx)
		return s, true, nil, err
	}
	return snap, false, macs, err
}

// newAddresses reports whether snap lists an address or delegated prefix
// (what a stray packet can be for) that prev did not.
func newAddresses(prev, snap *imds.Snapshot) bool {
	for i := range snap.ENIs {
		old := prev.ENI(snap.ENIs[i].MAC)
		if old == nil {
			continue
		}
		had := evidence.Items(old)
		for _, it := range evidence.Items(&snap.ENIs[i]) {
			if !slices.Contains(had, it) {
				return true
			}
		}
	}
	return false
}

// listsNew reports whether snap lists an ENI that neither prev nor the
// read knew (a partial read leaves it unread).
func listsNew(snap, prev *imds.Snapshot, read []string) bool {
	for i := range snap.ENIs {
		if mac := snap.ENIs[i].MAC; prev.ENI(mac) == nil && !slices.Contains(read, mac) {
			return true
		}
	}
	return false
}

func (l *loop) onRead(ctx context.Context, r readResult) {
	r.lane.busy = false
	if ctx.Err() != nil {
		return
	}
	switch {
	case errors.Is(r.err, errNoChange):
		if r.demand { // a demand read merged into a peek that found nothing new
			l.demand.readDone(false)
		}
		l.scheduleReads(l.raw, time.Now())
	case r.err != nil:
		l.pub.read(r.err)
		if r.demand {
			l.demand.readDone(false)
		}
		l.onReadFailed(r.err)
	default:
		l.pub.read(nil)
		var snap *imds.Snapshot
		prev := l.last
		l.raw, snap = l.reads.fresh.merge(l.raw, l.last, r)
		if r.demand {
			l.demand.readDone(newAddresses(prev, snap))
		}
		l.onSnapshot(snap)
	}
	if next := r.lane.next; next != nil {
		r.lane.next = nil
		l.startRead(ctx, *next, r.lane)
	}
}

func (l *loop) onReadFailed(err error) {
	if l.cutoff.suspect(err, time.Now()) {
		l.rollBack()
	}
	class := errorClass(err)
	if class != l.lastErr {
		// ERROR is for what needs a human: IMDS turned off. A timeout or
		// an unreachable IMDS is retried and usually passes.
		logAt := l.log.Warn
		if errors.Is(err, imds.ErrDisabled) {
			logAt = l.log.Error
		}
		logAt("IMDS read failed; keeping the current configuration", zap.String("class", class), zap.Error(err))
		l.lastErr = class
	}
	l.setStatus(fmt.Sprintf("degraded: IMDS %s; configuration kept", class))
	l.retryReq = readReq{full: true}
	arm(l.retry, l.reads.failing.Next())
}

func (l *loop) onSnapshot(snap *imds.Snapshot) {
	if l.lastErr != "" {
		l.log.Info("IMDS answering again")
		l.lastErr = ""
	}
	l.reads.failing.Reset()
	for _, mac := range l.cutoff.answered(l.raw) {
		l.log.Warn("IMDS answers again: trying the rolled-back ENI once more", zap.String("mac", mac))
	}
	l.logStateChanges(snap)
	l.last = snap
	l.apply("imds")
	l.scheduleReads(l.raw, time.Now())
	if !l.ready {
		l.sendReady("")
	}
}

// scheduleReads arms the timers for what the last read left open: ENIs
// with a link still propagating (peeked at on peekSchedule's interval, or
// re-read with a backoff when they have no single key to watch), links
// IMDS does not list yet, and held removals to confirm. With none of
// these, only the periodic refresh reads.
func (l *loop) scheduleReads(raw *imds.Snapshot, now time.Time) {
	peekable, blind := l.links.pendingWithLink(raw)
	if every, ok := l.peeks.next(peekable, now); ok {
		arm(l.poll, every)
	} else {
		l.poll.Stop()
	}
	blind = append(blind, l.links.unlisted(raw, now)...)
	if len(blind) > 0 {
		// New ENIs (a link IMDS does not list yet, an ENI still
		// propagating): like the attach's own read, they may run beside
		// a slow refresh rather than queue behind it.
		l.retryReq = readReq{macs: blind, attach: true}
		arm(l.retry, l.reads.pending.Next())
		return
	}
	l.reads.pending.Reset()
	if due, ok := l.tracker.Due(); ok {
		l.retryReq = readReq{macs: l.links.linkedMACs(raw)}
		arm(l.retry, jitterUp(due.Sub(now)))
		return
	}
	l.retry.Stop()
}

// logStateChanges logs an ENI's metadata state when it changes (pending,
// invalid, unknown, complete again, gone from IMDS): one line per change,
// nothing on a quiet refresh.
func (l *loop) logStateChanges(snap *imds.Snapshot) {
	seen := map[string]bool{}
	for _, e := range snap.ENIs {
		seen[e.MAC] = true
		old, known := l.states[e.MAC]
		if known && old == e.State {
			continue
		}
		l.states[e.MAC] = e.State
		fields := []zap.Field{zap.String("mac", e.MAC), zap.String("eni", e.InterfaceID)}
		switch {
		case e.State == imds.Complete && !known:
			l.log.Info("ENI listed in IMDS", append(fields, zap.Int("card", e.NetworkCard), zap.Int("device", e.DeviceNumber))...)
		case e.State == imds.Complete:
			l.log.Info("ENI metadata complete again", append(fields, zap.Stringer("was", old))...)
		case e.State == imds.Pending && e.NoAddresses && !l.links.hasLink(e.MAC):
			l.log.Info("ENI listed without addresses or a link (EFA-only): nothing to configure", fields...)
		case e.State == imds.Pending:
			l.log.Info("ENI pending (IMDS still propagating)", append(fields, zap.String("reason", e.Reason))...)
		default:
			l.log.Warn("ENI metadata "+e.State.String()+": leaving its configuration as it is", append(fields, zap.String("reason", e.Reason))...)
		}
	}
	for mac := range l.states {
		if !seen[mac] {
			delete(l.states, mac)
			l.log.Info("ENI no longer listed in IMDS (its configuration stays while its link exists)", zap.String("mac", mac))
		}
	}
}

// summary is the one-line STATUS= for systemctl status, from what the
// last pass did.
func summary(res *netconf.Result) string {
	counts := map[string]int{}
	configured := 0
	for _, e := range res.ENIs {
		switch e.Disposition {
		case plan.Configure:
			if e.Link != "" && len(e.Failed) == 0 {
				configured++
			}
		case plan.Hold:
			if e.IMDSState == imds.Complete {
				counts["invalid"]++ // held by the planner's guard
			} else {
				counts[e.IMDSState.String()]++
			}
		case plan.Exclude:
			counts["excluded"]++
		case plan.Idle:
			counts["EFA-only"]++
		}
	}
	parts := []string{fmt.Sprintf("%d ENIs configured", configured)}
	for _, k := range []string{"pending", "invalid", "unknown", "excluded", "EFA-only"} {
		if counts[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	return strings.Join(parts, ", ")
}

func errorClass(err error) string {
	switch {
	case errors.Is(err, imds.ErrDisabled):
		return "disabled (403)"
	case errors.Is(err, imds.ErrUnreachable):
		return "unreachable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "error"
}
