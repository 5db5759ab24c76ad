package imds

import (
	"context"
	"time"
)

// DefaultPollInterval is how often Settle peeks at a pending ENI.
const DefaultPollInterval = 150 * time.Millisecond

// Settle waits for the Pending ENIs of snap that want selects (nil: every
// Pending ENI) to settle, and returns the latest snapshot: when none of
// them is Pending any more, when maxWait has passed or when ctx ends.
// `apply --wait` passes a want that selects ENIs whose link exists, so an
// EFA-only interface (NoAddresses, no link) never makes it wait.
//
// An ENI with a WaitKey is peeked at every Options.PollInterval (one
// request, kept-alive connection) and re-read with ReadENIs as soon as
// the key changes, so it is seen Complete within about one interval of
// IMDS completing it. An ENI without one (WaitKey "") is re-read on the
// client's backoff. Failed reads are retried until maxWait; they never
// replace the snapshot (the last one read is returned). No request is
// made when nothing selected is pending.
func (c *Client) Settle(ctx context.Context, snap *Snapshot, want func(*ENI) bool, maxWait time.Duration) *Snapshot {
	deadline := time.Now().Add(maxWait)
	bo := NewBackoff(c.opts.Backoff)
	nextBlind := time.Now().Add(bo.Next())
	for {
		targets := settleTargets(snap, want)
		left := time.Until(deadline)
		if len(targets) == 0 || left <= 0 || !sleepCtx(ctx, min(c.opts.PollInterval, left)) {
			return snap
		}
		blindDue := !time.Now().Before(nextBlind)
		if blindDue {
			nextBlind = time.Now().Add(bo.Next())
		}
		var reread []string
		for _, e := range targets {
			if e.WaitKey == "" {
				if blindDue {
					reread = append(reread, e.MAC)
				}
				continue
			}
			if changed, err := c.Peek(ctx, e); err == nil && changed {
				reread = append(reread, e.MAC)
			}
		}
		if len(reread) > 0 {
			if s, err := c.ReadENIs(ctx, snap, reread); err == nil {
				snap = s
			}
		}
	}
}

// settleTargets lists the Pending ENIs of snap that want selects.
func settleTargets(snap *Snapshot, want func(*ENI) bool) []*ENI {
	var out []*ENI
	if snap == nil {
		return nil
	}
	for i := range snap.ENIs {
		e := &snap.ENIs[i]
		if e.State == Pending && IsMAC(e.MAC) && (want == nil || want(e)) {
			out = append(out, e)
		}
	}
	return out
}
