// Package converge is "converge once", the one path that `ec2net apply`,
// `ec2net plan` and the daemon's first pass share:
//
//	imds (read, wait for pending ENIs) → evidence (removals need proof)
//	→ netconf (plan.Desired, diff against the kernel, netlink writes)
//
// A plan is exactly what an apply in its place would do: the same reads,
// the same evidence, the same diff.
package converge

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/evidence"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/plan"
)

// Source is where snapshots come from (imds.Client).
type Source interface {
	evidence.Reader
	// Settle polls the ENIs want selects while they are pending, for up
	// to maxWait, and returns the latest snapshot.
	Settle(ctx context.Context, snap *imds.Snapshot, want func(*imds.ENI) bool, maxWait time.Duration) *imds.Snapshot
}

// Target is the namespace to converge (netconf.Reconciler).
type Target interface {
	Plan(*imds.Snapshot, config.Config) (*netconf.Plan, error)
	Apply(*imds.Snapshot, config.Config) (*netconf.Result, error)
	Links() ([]plan.LinkInfo, error)
	KernelSigns
}

// Options say how to converge.
type Options struct {
	Config config.Config
	// Wait is how long to re-read pending ENIs before converging.
	Wait time.Duration
	// DryRun plans instead of applying.
	DryRun bool
	// Tracker carries the evidence of earlier reads (the daemon's). Nil
	// means none: a removal is then confirmed by a second read, waiting
	// as long as the evidence rule says.
	Tracker *evidence.Tracker
	// HoldRemovals, with a Tracker, applies at once without what would be
	// removed instead of waiting for the confirming read; the caller
	// reads again when Tracker.Due says (the daemon).
	HoldRemovals bool
	// Read, when set, replaces src.Snapshot for the first read (the
	// daemon reads only some ENIs: imds.Client.ReadENIs).
	Read func(ctx context.Context) (*imds.Snapshot, error)
}

// Outcome is what one convergence did (or, dry, would do).
type Outcome struct {
	Snapshot *imds.Snapshot  // the snapshot converged to, evidence applied
	Plan     *netconf.Plan   // DryRun
	Result   *netconf.Result // otherwise
	Config   config.Config   // as converged with (secondary-enis resolved)
	CNISigns []string        // why secondary-enis = auto meant none
}

// ENIs returns the per-ENI results of the plan or the apply.
func (o *Outcome) ENIs() []netconf.ENIResult {
	if o.Result != nil {
		return o.Result.ENIs
	}
	if o.Plan != nil {
		return o.Plan.ENIs
	}
	return nil
}

// Held returns the ENIs left as they are because their metadata is not
// trustworthy (pending, invalid, unknown): what `apply` exits 2 for.
func (o *Outcome) Held() []netconf.ENIResult {
	var out []netconf.ENIResult
	for _, e := range o.ENIs() {
		if e.Disposition == plan.Hold {
			out = append(out, e)
		}
	}
	return out
}

// Once reads IMDS, applies the evidence rule and converges the target.
func Once(ctx context.Context, src Source, tgt Target, o Options) (*Outcome, error) {
	var signs []string
	var err error
	if o.Config, signs, err = Resolve(o.Config, tgt); err != nil {
		return nil, err
	}
	out := &Outcome{Config: o.Config, CNISigns: signs}
	if ca, ok := tgt.(checkedApplier); ok && !o.DryRun && !o.HoldRemovals {
		var err error
		out.Snapshot, out.Result, err = applyConfirmed(ctx, src, tgt, ca, o)
		return out, err
	}
	snap, err := Read(ctx, src, tgt, o)
	if err != nil {
		return nil, err
	}
	out.Snapshot = snap
	if o.DryRun {
		out.Plan, err = tgt.Plan(snap, o.Config)
	} else {
		out.Result, err = tgt.Apply(snap, o.Config)
	}
	return out, err
}

// checkedApplier is a target that can show the changes of an apply
// before making them (netconf.Reconciler).
type checkedApplier interface {
	ApplyChecked(*imds.Snapshot, config.Config, func([]netconf.Change) error) (*netconf.Result, error)
}

// errNeedsEvidence stops an apply whose changes would remove something
// IMDS no longer lists before any is made.
type errNeedsEvidence map[string][]netip.Prefix

func (errNeedsEvidence) Error() string { return "a removal needs a confirming read" }

// applyConfirmed is Read then Apply in one kernel pass where it can be:
// the evidence rule is asked of the apply's own changes, under its lock.
// Only when they would remove an item of an ENI IMDS lists is the apply
// abandoned (nothing made), the confirming read taken, and the apply
// computed again. Read's separate plan would cost a whole extra pass (a
// fifth of a cold `ec2net apply` of a large instance).
func applyConfirmed(ctx context.Context, src Source, tgt Target, ca checkedApplier, o Options) (*imds.Snapshot, *netconf.Result, error) {
	snap, err := readSettled(ctx, src, tgt, o)
	if err != nil {
		return nil, nil, err
	}
	tracker := o.Tracker
	if tracker == nil {
		tracker = evidence.New(2, o.Config.RemoveAfterTime)
	}
	first := tracker.Filter(snap)
	res, err := ca.ApplyChecked(first, o.Config, func(changes []netconf.Change) error {
		if items := removalsIn(first, changes); len(items) > 0 {
			return errNeedsEvidence(items)
		}
		return nil
	})
	var needs errNeedsEvidence
	if !errors.As(err, &needs) {
		return first, res, err
	}
	second, err := tracker.Recheck(ctx, src, first, needs)
	if err != nil {
		return nil, nil, err
	}
	res, err = tgt.Apply(second, o.Config)
	return second, res, err
}

// Read is the first half of Once: one read (re-reading pending ENIs for
// up to o.Wait) with the evidence rule applied, ready to converge to. The
// daemon reads in a worker and applies in its loop.
func Read(ctx context.Context, src Source, tgt Target, o Options) (*imds.Snapshot, error) {
	snap, err := readSettled(ctx, src, tgt, o)
	if err != nil {
		return nil, err
	}
	tracker := o.Tracker
	if tracker == nil {
		tracker = evidence.New(2, o.Config.RemoveAfterTime)
	}
	removals := Removals(tgt, o.Config)
	if o.HoldRemovals {
		filtered := tracker.Filter(snap)
		items, err := removals(filtered)
		if err != nil {
			return nil, err
		}
		return tracker.Hold(filtered, items), nil
	}
	return tracker.Confirm(ctx, src, snap, removals)
}

// readSettled is one read, re-reading pending ENIs for up to o.Wait.
func readSettled(ctx context.Context, src Source, tgt Target, o Options) (*imds.Snapshot, error) {
	read := o.Read
	if read == nil {
		read = src.Snapshot
	}
	snap, err := read(ctx)
	if err != nil {
		return nil, err
	}
	if o.Wait > 0 {
		snap = src.Settle(ctx, snap, linked(tgt), o.Wait)
	}
	return snap, nil
}

// linked selects the ENIs worth waiting for: those whose link exists in
// the namespace. Without a link there is nothing to configure yet (an
// EFA-only interface never gets one), and waiting would only hold up boot.
func linked(tgt Target) func(*imds.ENI) bool {
	have := map[string]bool{}
	if links, err := tgt.Links(); err == nil {
		for _, l := range links {
			have[l.MAC] = true
		}
	}
	return func(e *imds.ENI) bool { return have[e.MAC] }
}

// Removals is the evidence question asked of a target: which addresses and
// delegated prefixes of ENIs listed Complete would converging remove?
// Addresses are found from their deletion, prefixes (and addresses of
// ENIs whose addresses are not ec2net's) from their rule's deletion.
func Removals(tgt Target, cfg config.Config) evidence.Removals {
	return func(snap *imds.Snapshot) (map[string][]netip.Prefix, error) {
		p, err := tgt.Plan(snap, cfg)
		if err != nil {
			return nil, err
		}
		return removalsIn(snap, p.Changes), nil
	}
}

// removalsIn picks the evidence question's answer out of changes.
func removalsIn(snap *imds.Snapshot, changes []netconf.Change) map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for _, c := range changes {
		if c.Op != netconf.OpDel {
			continue
		}
		e := snap.ENI(c.MAC)
		if e == nil || e.State != imds.Complete {
			continue
		}
		var item netip.Prefix
		switch c.Kind {
		case netconf.KindAddr:
			a := c.Addr.Prefix.Addr()
			item = netip.PrefixFrom(a, a.BitLen())
		case netconf.KindRule:
			item = c.Rule.Src
		}
		// An item IMDS still lists goes for another reason
		// (exclusion, manage-primary off): no evidence to wait for.
		if item.IsValid() && !slices.Contains(evidence.Items(e), item) {
			out[c.MAC] = append(out[c.MAC], item)
		}
	}
	return out
}
