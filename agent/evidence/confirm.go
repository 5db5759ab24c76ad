package evidence

import (
	"context"
	"net/netip"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
)

// Reader reads IMDS (imds.Client is one).
type Reader interface {
	Snapshot(ctx context.Context) (*imds.Snapshot, error)
}

// Removals reports, per ENI MAC, the addresses and delegated prefixes that
// converging to a snapshot would remove.
type Removals func(*imds.Snapshot) (map[string][]netip.Prefix, error)

// Confirm is the evidence rule for a process without history of earlier
// reads: snap (one successful read) is filtered; if converging to it would
// remove an item of an ENI IMDS lists, the item is held, IMDS is read
// again once the rule allows (remove-after-time after the first read) and
// only what both reads agree is gone is left out of the returned snapshot.
// When nothing would be removed, one read is enough.
func (t *Tracker) Confirm(ctx context.Context, r Reader, snap *imds.Snapshot, removals Removals) (*imds.Snapshot, error) {
	first := t.Filter(snap)
	items, err := removals(first)
	if err != nil {
		return nil, err
	}
	if len(items) == 0 {
		return first, nil
	}
	return t.Recheck(ctx, r, first, items)
}

// Recheck is the second half of Confirm, for a caller that found the
// items itself: first is a snapshot Filter returned, items what
// converging to it would remove. The items are held, IMDS is read again
// once the rule allows, and the second read, filtered, is returned.
func (t *Tracker) Recheck(ctx context.Context, r Reader, first *imds.Snapshot, items map[string][]netip.Prefix) (*imds.Snapshot, error) {
	t.Hold(first, items)
	if due, ok := t.Due(); ok {
		// At least a moment, even with no time bound: a throttled or
		// lagging IMDS should get a chance to answer differently.
		wait := max(time.Until(due), 200*time.Millisecond)
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	second, err := r.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return t.Filter(second), nil
}
