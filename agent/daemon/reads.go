package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ec2net/ec2net/agent/converge"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/plan"
	"go.uber.org/zap"
)

// readKind says why a read was asked for (for the log only: every read
// is the same converge.Read).
type readKind int

const (
	readFirst readKind = iota
	readFull
)

type readResult struct {
	snap *imds.Snapshot
	err  error
}

// readQueue runs one IMDS read at a time: a read asked for while one is
// under way is run once after it, however many were asked for.
type readQueue struct {
	busy, again bool
	results     chan readResult
	pending     *imds.Backoff // re-reads while an ENI propagates
	failing     *imds.Backoff // re-reads while IMDS fails
}

func newReadQueue() readQueue {
	return readQueue{
		results: make(chan readResult, 1),
		pending: imds.NewBackoff(imds.BackoffConfig{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}),
		failing: imds.NewBackoff(imds.BackoffConfig{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.2}),
	}
}

// startRead runs one read in the worker: the snapshot with the evidence
// rule applied (removals it cannot yet prove are held in the tracker).
func (l *loop) startRead(ctx context.Context, kind readKind) {
	l.reads.busy = true
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		snap, err := converge.Read(ctx, l.o.IMDS, l.o.Reconciler, converge.Options{
			Config: l.cfg, Tracker: l.tracker, HoldRemovals: true})
		select {
		case l.reads.results <- readResult{snap: snap, err: err}:
		case <-ctx.Done():
		}
	}()
}

func (l *loop) requestRead(ctx context.Context, kind readKind) {
	if l.reads.busy {
		l.reads.again = true
		return
	}
	l.startRead(ctx, kind)
}

func (l *loop) onRead(ctx context.Context, r readResult) {
	l.reads.busy = false
	if ctx.Err() != nil {
		return
	}
	if r.err != nil {
		l.onReadFailed(r.err)
	} else {
		l.onSnapshot(r.snap)
	}
	if l.reads.again {
		l.reads.again = false
		l.startRead(ctx, readFull)
	}
}

func (l *loop) onReadFailed(err error) {
	class := errorClass(err)
	if class != l.lastErr {
		l.log.Error("IMDS read failed; keeping the current configuration", zap.String("class", class), zap.Error(err))
		l.lastErr = class
	}
	l.setStatus(fmt.Sprintf("degraded: IMDS %s; configuration kept", class))
	arm(l.retry, l.reads.failing.Next())
}

func (l *loop) onSnapshot(snap *imds.Snapshot) {
	if l.lastErr != "" {
		l.log.Info("IMDS answering again")
		l.lastErr = ""
	}
	l.reads.failing.Reset()
	l.logStateChanges(snap)
	l.last = snap
	l.apply("imds")
	l.scheduleNextRead(snap, time.Now())
	if !l.ready {
		l.sendReady("")
	}
}

// scheduleNextRead re-reads soon when an ENI with a link is still
// propagating (or a link appeared that IMDS does not list yet), or when a
// held removal can be confirmed; otherwise the periodic refresh is enough.
func (l *loop) scheduleNextRead(snap *imds.Snapshot, now time.Time) {
	if l.links.awaiting(snap, now) {
		arm(l.retry, l.reads.pending.Next())
		return
	}
	l.reads.pending.Reset()
	if due, ok := l.tracker.Due(); ok {
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
			counts[e.IMDSState.String()]++
		case plan.Exclude:
			counts["excluded"]++
		}
	}
	parts := []string{fmt.Sprintf("%d ENIs configured", configured)}
	for _, k := range []string{"pending", "invalid", "unknown", "excluded"} {
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
