package daemon

import (
	"context"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/evidence"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
)

// ConfirmRemovals makes a removal wait for positive evidence when there is
// no history of earlier reads (at daemon start, and for `ec2net apply`): if
// applying snap would remove any address, route or rule of an ENI that IMDS
// lists, IMDS is read once more and only what both reads agree on is
// removed. tracker may be nil (a private one is used).
func ConfirmRemovals(ctx context.Context, client *imds.Client, rec *netconf.Reconciler, cfg config.Config, snap *imds.Snapshot, tracker *evidence.Tracker) (*imds.Snapshot, error) {
	if tracker == nil {
		tracker = evidence.New(2)
	}
	first := tracker.Filter(snap)
	p, err := rec.Plan(first, cfg)
	if err != nil {
		return nil, err
	}
	if !removesFromListedENI(p, first) {
		return first, nil
	}
	// Not an immediate re-read: a throttled or lagging IMDS should get a
	// moment to answer differently.
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(200 * time.Millisecond):
	}
	second, err := client.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return tracker.Filter(second), nil
}

func removesFromListedENI(p *netconf.Plan, s *imds.Snapshot) bool {
	for _, c := range p.Changes {
		if c.Op != netconf.OpDel {
			continue
		}
		if e := s.ENI(c.MAC); e != nil && e.State == imds.Complete {
			return true
		}
	}
	return false
}
