// Package daemon is `ec2net run`: one process that reconciles the kernel to
// IMDS at start (cold and warm attach), then keeps it true on link events
// (hot attach, detach, re-attach, rename), on a jittered periodic refresh
// (address and prefix changes, which have no kernel event), on SIGHUP, and
// after someone else deletes what ec2net owns (repair).
//
// Everything runs in one loop goroutine that owns all state; IMDS reads run
// one at a time in a worker so the loop keeps answering the systemd
// watchdog and link events while a read waits on a slow IMDS. Events are
// coalesced: a burst of link events causes one read and one apply.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/evidence"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
)

// Options wires the daemon to its collaborators.
type Options struct {
	Config     config.Config
	Logger     *zap.Logger
	IMDS       *imds.Client
	Reconciler *netconf.Reconciler
	NetNS      netns.NsHandle // the namespace to watch (the one ec2net runs in)
	Version    string

	// Notify sends an sd_notify state; nil means the real one
	// (NOTIFY_SOCKET), a no-op outside systemd.
	Notify func(state string)
	// Signals delivers SIGHUP (refresh now) and SIGUSR2 (test hook); nil
	// means the process's real signals.
	Signals <-chan os.Signal
	// Ready, if not nil, is closed after READY=1 was sent (tests).
	Ready chan<- struct{}
}

// confirmDelay is how soon a read that no longer lists an address is
// confirmed by a second read, so that an unassignment is applied within
// one refresh interval while one read alone is never enough.
const confirmDelay = 2 * time.Second

// PIDFile is where a running daemon records its pid, in the state directory
// of its namespace.
func PIDFile(stateDir string) string { return filepath.Join(stateDir, "daemon.pid") }

// Running returns the pid of a daemon running with this state directory, or 0.
func Running(stateDir string) int {
	b, err := os.ReadFile(PIDFile(stateDir))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return 0
	}
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return 0
	}
	return pid
}

// Run runs the daemon until ctx is cancelled (SIGTERM). It leaves the
// configuration in place when it returns.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Notify == nil {
		o.Notify = func(state string) { _, _ = daemon.SdNotify(false, state) }
	}
	sigs := o.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGHUP, syscall.SIGUSR2)
		defer signal.Stop(ch)
		sigs = ch
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Let `ec2net cleanup` in this namespace know that a daemon would put
	// everything back.
	pidFile := PIDFile(o.Reconciler.StateDir())
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		o.Logger.Warn("cannot write pid file", zap.Error(err))
	}
	defer os.Remove(pidFile)

	events, err := subscribeEvents(ctx, o.NetNS, o.Logger)
	if err != nil {
		return fmt.Errorf("subscribe to netlink events: %w", err)
	}
	d := &loop{
		o:        o,
		log:      o.Logger,
		tracker:  evidence.New(o.Config.RemoveAfter),
		links:    map[int]string{},
		appeared: map[string]time.Time{},
		states:   map[string]imds.ENIState{},
		readRes:  make(chan readResult, 1),
		pending:  imds.NewBackoff(imds.BackoffConfig{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}),
		repairs:  newRepairLimiter(),
	}
	// Links that exist now are not "new": remember them so that their
	// next event (say, our own link-up) does not look like an attach.
	if h, err := netlink.NewHandleAt(nsutil.ForNetlink(o.NetNS)); err == nil {
		if links, err := h.LinkList(); err == nil {
			for _, l := range links {
				if a := l.Attrs(); len(a.HardwareAddr) == 6 {
					d.links[a.Index] = a.HardwareAddr.String()
				}
			}
		}
		h.Close()
	}
	// On return: cancel first (deferred last), so that the IMDS worker and
	// the netlink subscriptions stop, then wait for the worker.
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	return d.run(ctx, events, sigs, &wg)
}

type readResult struct {
	snap *imds.Snapshot
	err  error
}

type loop struct {
	o       Options
	log     *zap.Logger
	tracker *evidence.Tracker

	last       *imds.Snapshot           // last successful read, filtered for evidence
	links      map[int]string           // ifindex -> MAC, to recognise new links and re-attaches
	appeared   map[string]time.Time     // MAC -> when its link appeared, while IMDS does not list it yet
	states     map[string]imds.ENIState // MAC -> state in the last read, to log changes only
	reading    bool
	readAgain  bool
	readRes    chan readResult
	pending    *imds.Backoff
	repairs    *repairLimiter
	ready      bool
	lastErr    string // last IMDS error class logged, so an outage logs once
	lastStatus string
	wedged     bool
}

func (d *loop) run(ctx context.Context, ev *eventStreams, sigs <-chan os.Signal, wg *sync.WaitGroup) error {
	cfg := d.o.Config

	// Timers. A stopped timer's channel never fires; each is re-armed
	// as needed.
	refresh := time.NewTimer(jitter(cfg.RefreshInterval))
	defer refresh.Stop()
	retry := newIdleTimer() // pending ENIs, evidence confirmation, IMDS errors
	defer retry.Stop()
	applySoon := newIdleTimer() // repair / detach apply, rate limited
	defer applySoon.Stop()
	readyDeadline := time.NewTimer(cfg.ReadyTimeout)
	defer readyDeadline.Stop()

	var watchdog <-chan time.Time
	if interval, err := daemon.SdWatchdogEnabled(false); err == nil && interval > 0 {
		t := time.NewTicker(interval / 3)
		defer t.Stop()
		watchdog = t.C
		d.o.Notify("WATCHDOG=1")
	}

	d.log.Info("ec2net starting", zap.String("version", d.o.Version), zap.Duration("refresh", cfg.RefreshInterval))
	d.startRead(ctx, wg)

	for {
		select {
		case <-ctx.Done():
			d.o.Notify("STOPPING=1")
			d.log.Info("ec2net stopping; configuration left in place")
			return nil

		case <-watchdog:
			if !d.wedged {
				d.o.Notify("WATCHDOG=1")
			}

		case <-readyDeadline.C:
			if !d.ready {
				d.log.Warn("IMDS has not answered: reporting ready, degraded", zap.Duration("after", cfg.ReadyTimeout))
				d.sendReady("degraded: IMDS not answering yet")
			}

		case s := <-sigs:
			switch s {
			case syscall.SIGHUP:
				d.log.Info("SIGHUP: refreshing now")
				d.requestRead(ctx, wg)
			case syscall.SIGUSR2:
				if os.Getenv("EC2NET_TEST_HOOKS") == "1" {
					// Test hook: wedge the main loop so the systemd
					// watchdog must kill and restart us.
					d.log.Warn("test hook: wedging the main loop")
					d.wedged = true
					<-ctx.Done()
					return nil
				}
			}

		case <-refresh.C:
			d.requestRead(ctx, wg)
			refresh.Reset(jitter(cfg.RefreshInterval))

		case <-retry.C:
			retry.idle = true
			d.requestRead(ctx, wg)

		case <-applySoon.C:
			applySoon.idle = true
			d.apply("repair")

		case r := <-d.readRes:
			d.reading = false
			d.handleRead(ctx, r, retry)
			if d.readAgain {
				d.readAgain = false
				d.startRead(ctx, wg)
			}

		case u, ok := <-ev.links:
			lost := !ok
			var readNeeded, applyNeeded bool
			if ok {
				readNeeded, applyNeeded = d.linkEvent(u)
			}
			// Coalesce: take every event already queued before acting.
			for drained := lost; !drained; {
				select {
				case u, ok := <-ev.links:
					if !ok {
						lost, drained = true, true
						break
					}
					r, a := d.linkEvent(u)
					readNeeded, applyNeeded = readNeeded || r, applyNeeded || a
				default:
					drained = true
				}
			}
			if lost {
				if ctx.Err() != nil {
					continue // shutting down: ctx.Done is next
				}
				// The socket failed (ENOBUFS after an event storm, say):
				// events may have been lost. Subscribe again and re-read
				// everything rather than trust what we know.
				ev.close()
				d.log.Warn("netlink event subscription failed; resubscribing and re-reading")
				next, err := subscribeEvents(ctx, d.o.NetNS, d.log)
				if err != nil {
					return fmt.Errorf("resubscribe to netlink events: %w", err)
				}
				ev = next
				readNeeded, applyNeeded = true, true
			}
			if applyNeeded {
				d.apply("link change")
			}
			if readNeeded {
				d.requestRead(ctx, wg)
			}

		case <-ev.deletions:
			// Something deleted a route, rule or address. Ours? A
			// no-change apply costs one dump and no writes, so just
			// reconcile, rate limited so that ec2net never fights
			// another manager in a tight loop.
			drain(ev.deletions)
			if d.last != nil && applySoon.idle {
				applySoon.Reset(d.repairs.delay())
				applySoon.idle = false
			}
		}
	}
}

// startRead runs one IMDS read in the worker. Until a read has succeeded
// (at start, or while IMDS has been down since) there is no history of
// earlier reads, so a planned removal is confirmed with a second read.
func (d *loop) startRead(ctx context.Context, wg *sync.WaitGroup) {
	d.reading = true
	initial := d.last == nil
	wg.Add(1)
	go func() {
		defer wg.Done()
		snap, err := d.o.IMDS.Snapshot(ctx)
		if err == nil && initial {
			// No history yet: a removal needs a second read now.
			// (The reconciler is not used concurrently: the loop
			// applies nothing before this first read returns.)
			snap, err = ConfirmRemovals(ctx, d.o.IMDS, d.o.Reconciler, d.o.Config, snap, nil)
		}
		select {
		case d.readRes <- readResult{snap: snap, err: err}:
		case <-ctx.Done():
		}
	}()
}

func (d *loop) requestRead(ctx context.Context, wg *sync.WaitGroup) {
	if d.reading {
		d.readAgain = true
		return
	}
	d.startRead(ctx, wg)
}

func (d *loop) handleRead(ctx context.Context, r readResult, retry *idleTimer) {
	if ctx.Err() != nil {
		return
	}
	if r.err != nil {
		class := errorClass(r.err)
		if class != d.lastErr {
			d.log.Error("IMDS read failed; keeping the current configuration", zap.String("class", class), zap.Error(r.err))
			d.lastErr = class
		}
		d.setStatus(fmt.Sprintf("degraded: IMDS %s; configuration kept", class))
		retry.Reset(d.pending.Next())
		retry.idle = false
		return
	}
	if d.lastErr != "" {
		d.log.Info("IMDS answering again")
		d.lastErr = ""
	}
	snap := d.tracker.Filter(r.snap)
	d.logStateChanges(snap)
	d.last = snap
	d.apply("imds")

	// Re-read soon when an ENI is still propagating or a removal awaits
	// its confirming read; otherwise the periodic refresh is enough.
	switch {
	case hasPending(snap) || d.awaitingIMDS(snap):
		retry.Reset(d.pending.Next())
		retry.idle = false
	case len(d.tracker.Retained()) > 0:
		d.pending.Reset()
		retry.Reset(jitter(confirmDelay))
		retry.idle = false
	default:
		d.pending.Reset()
	}
	if !d.ready {
		d.sendReady("")
	}
}

// apply reconciles the kernel to the last snapshot.
func (d *loop) apply(why string) {
	if d.last == nil {
		return
	}
	res, err := d.o.Reconciler.Apply(d.last, d.o.Config)
	if err != nil {
		d.log.Error("reconcile failed", zap.String("trigger", why), zap.Error(err))
		d.setStatus("degraded: " + err.Error())
		return
	}
	for _, e := range res.ENIs {
		for _, c := range e.Applied {
			msg := "configured"
			if c.Op == netconf.OpDel {
				msg = "removed"
			}
			if why == "repair" && c.Op != netconf.OpDel {
				msg = "repaired"
				if !d.repairs.firstTime(c.Text()) {
					continue
				}
			}
			d.log.Info(msg, zap.String("link", e.Link), zap.String("mac", e.MAC), zap.String("eni", e.ENIID), zap.String("change", c.Text()))
		}
		for _, f := range e.Failed {
			d.log.Error("change failed", zap.String("link", e.Link), zap.String("mac", e.MAC), zap.String("change", f.Change.Text()), zap.Error(f.Err))
		}
	}
	if why == "repair" && res.Writes > 0 {
		d.repairs.record()
	}
	d.setStatus(summary(d.last, d.o.Config))
}

// logStateChanges logs an ENI's metadata state when it changes (pending,
// invalid, unknown, complete again, gone from IMDS): one line per change,
// nothing on a quiet refresh.
func (d *loop) logStateChanges(snap *imds.Snapshot) {
	seen := map[string]bool{}
	for _, e := range snap.ENIs {
		seen[e.MAC] = true
		old, known := d.states[e.MAC]
		if known && old == e.State {
			continue
		}
		d.states[e.MAC] = e.State
		fields := []zap.Field{zap.String("mac", e.MAC), zap.String("eni", e.InterfaceID)}
		switch {
		case e.State == imds.Complete && !known:
			d.log.Info("ENI listed in IMDS", append(fields, zap.Int("card", e.NetworkCard), zap.Int("device", e.DeviceNumber))...)
		case e.State == imds.Complete:
			d.log.Info("ENI metadata complete again", append(fields, zap.Stringer("was", old))...)
		case e.State == imds.Pending:
			d.log.Info("ENI pending (IMDS still propagating)", append(fields, zap.String("reason", e.Reason))...)
		default:
			d.log.Warn("ENI metadata "+e.State.String()+": leaving its configuration as it is", append(fields, zap.String("reason", e.Reason))...)
		}
	}
	for mac := range d.states {
		if !seen[mac] {
			delete(d.states, mac)
			d.log.Info("ENI no longer listed in IMDS (its configuration stays while its link exists)", zap.String("mac", mac))
		}
	}
}

// awaitingIMDS reports whether a link appeared recently whose MAC IMDS does
// not list yet (IMDS propagates asynchronously: the NIC can appear first).
// Such links are re-read with the propagation backoff for PropagationWait,
// then left to the periodic refresh (they may not be ENIs at all).
func (d *loop) awaitingIMDS(snap *imds.Snapshot) bool {
	waiting := false
	for mac, since := range d.appeared {
		if snap.ENI(mac) != nil || time.Since(since) > d.o.Config.PropagationWait {
			delete(d.appeared, mac)
			continue
		}
		waiting = true
	}
	return waiting
}

// linkEvent updates the ifindex->MAC map and says whether the event needs
// an IMDS read (a link we have not seen: attach or re-attach) or just a
// reconcile against the last snapshot (a link gone: clean up its orphans
// now; a rename or flags change: restore what the ENI needs).
func (d *loop) linkEvent(u linkEvent) (read, apply bool) {
	if u.mac == "" {
		return false, false
	}
	if u.deleted {
		delete(d.links, u.index)
		delete(d.appeared, u.mac)
		d.o.IMDS.Forget(u.mac)
		d.tracker.Forget(u.mac)
		d.log.Info("link removed (ENI detached)", zap.String("link", u.name), zap.String("mac", u.mac))
		return false, true
	}
	if old, ok := d.links[u.index]; ok && old == u.mac {
		return false, true
	}
	d.links[u.index] = u.mac
	d.appeared[u.mac] = time.Now()
	d.log.Info("link appeared", zap.String("link", u.name), zap.String("mac", u.mac))
	return true, false
}

func (d *loop) sendReady(status string) {
	d.ready = true
	if status == "" {
		status = summary(d.last, d.o.Config)
	}
	d.lastStatus = status
	d.o.Notify("READY=1\nSTATUS=" + status)
	if d.o.Ready != nil {
		close(d.o.Ready)
		d.o.Ready = nil
	}
}

func (d *loop) setStatus(s string) {
	if s == d.lastStatus {
		return
	}
	d.lastStatus = s
	d.o.Notify("STATUS=" + s)
}

// summary is the one-line STATUS= for systemctl status.
func summary(s *imds.Snapshot, cfg config.Config) string {
	if s == nil {
		return "waiting for IMDS"
	}
	counts := map[imds.ENIState]int{}
	excluded := 0
	for _, e := range s.ENIs {
		if cfg.Excluded(e.MAC, e.InterfaceID, e.DeviceNumber) {
			excluded++
			continue
		}
		counts[e.State]++
	}
	parts := []string{fmt.Sprintf("%d ENIs configured", counts[imds.Complete])}
	for _, st := range []imds.ENIState{imds.Pending, imds.Invalid, imds.Unknown} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	if excluded > 0 {
		parts = append(parts, fmt.Sprintf("%d excluded", excluded))
	}
	return strings.Join(parts, ", ")
}

func hasPending(s *imds.Snapshot) bool {
	for _, e := range s.ENIs {
		if e.State == imds.Pending || e.State == imds.Unknown {
			return true
		}
	}
	return false
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

// jitter spreads d by ±10 % so that a fleet does not read IMDS in step.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	f := 0.9 + 0.2*rand.Float64()
	return time.Duration(float64(d) * f)
}

func drain[T any](ch <-chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// idleTimer is a timer that starts stopped and remembers whether it is armed.
type idleTimer struct {
	*time.Timer
	idle bool
}

func newIdleTimer() *idleTimer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &idleTimer{Timer: t, idle: true}
}

// repairLimiter keeps repairs from fighting another manager: the first
// repair is immediate, then the delay doubles with each repair inside a
// minute (up to the refresh interval's order of magnitude), and each object
// is logged once per ten minutes.
type repairLimiter struct {
	recent []time.Time
	logged map[string]time.Time
}

func newRepairLimiter() *repairLimiter { return &repairLimiter{logged: map[string]time.Time{}} }

func (r *repairLimiter) delay() time.Duration {
	now := time.Now()
	kept := r.recent[:0]
	for _, t := range r.recent {
		if now.Sub(t) < time.Minute {
			kept = append(kept, t)
		}
	}
	r.recent = kept
	if len(kept) == 0 {
		return 50 * time.Millisecond // let a burst of deletions land first
	}
	d := time.Second << min(len(kept)-1, 6)
	return d
}

func (r *repairLimiter) record() { r.recent = append(r.recent, time.Now()) }

func (r *repairLimiter) firstTime(obj string) bool {
	now := time.Now()
	if t, ok := r.logged[obj]; ok && now.Sub(t) < 10*time.Minute {
		return false
	}
	r.logged[obj] = now
	if len(r.logged) > 4096 {
		r.logged = map[string]time.Time{obj: now}
	}
	return true
}
