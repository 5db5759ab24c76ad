package netconf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"go.uber.org/zap"
)

// execute makes a pass's changes: every netlink write of ec2net goes
// through here, counted, and the ownership record follows what succeeded.
func (r *Reconciler) execute(p *pass) (*Result, error) {
	before := r.writes
	r.writeAhead(p)
	r.setSysctls(p)
	r.writes += len(p.changes)
	errs := r.w.Send(len(p.changes), func(i int, m *rtnl.Msg) { p.changes[i].encode(m) })
	// Each ENI's Applied is sized once: a change is a large value, and a
	// cold start makes thousands.
	perMAC := map[string]int{}
	for i := range p.changes {
		perMAC[p.changes[i].MAC]++
	}
	for mac, n := range perMAC {
		if res := p.result(mac); cap(res.Applied)-len(res.Applied) < n {
			res.Applied = slices.Grow(res.Applied, n)
		}
	}
	for i := range p.changes {
		c := &p.changes[i]
		res := p.result(c.MAC)
		created, err := c.settle(errs[i])
		if err != nil {
			res.Failed = append(res.Failed, ChangeError{Change: *c, Err: err})
			r.log.Warn("change failed", zap.String("mac", c.MAC), zap.Stringer("change", c), zap.Error(err))
			continue
		}
		res.Applied = append(res.Applied, *c)
		p.owned.note(*c, created)
		if ce := r.log.Check(zap.DebugLevel, "applied"); ce != nil {
			ce.Write(zap.String("mac", c.MAC), zap.Stringer("change", c))
		}
	}
	p.owned.settleIntents()
	for _, mac := range p.forget {
		if res := p.results[mac]; res == nil || len(res.Failed) == 0 {
			delete(p.owned.ENIs, mac)
		}
	}
	out := p.outcome()
	out.Writes = r.writes - before
	if err := r.commit(p.owned); err != nil {
		if !r.kernelMarks {
			return out, err
		}
		// Everything ec2net made carries its protocol in the kernel: the
		// record only attributes tables to ENIs that may disappear.
		r.log.Warn("ownership record not written; the kernel's marks keep ownership", zap.Error(err))
	}
	return out, nil
}

// setSysctls makes the changes that are not netlink writes (accept_ra)
// and takes them out of the pass's netlink batch. They sort first, so
// they precede the link being brought up.
func (r *Reconciler) setSysctls(p *pass) {
	kept := p.changes[:0]
	for _, c := range p.changes {
		if c.Kind != KindLink || !c.LinkSet.NoRA {
			kept = append(kept, c)
			continue
		}
		res := p.result(c.MAC)
		r.writes++
		switch err := r.writeNoRA(c.Link); {
		case err != nil && r.sysctlReadOnly:
			// Cannot be done here at all: warned once, not a failure of
			// every pass.
		case err != nil:
			res.Failed = append(res.Failed, ChangeError{Change: c, Err: err})
		default:
			res.Applied = append(res.Applied, c)
		}
	}
	p.changes = kept
}

// ErrNoRecord: the address was not added because ec2net could not record
// that it is adding it, and this kernel keeps no mark on addresses.
var ErrNoRecord = errors.New("not added: the ownership record cannot be written and this kernel does not mark addresses")

// writeAhead records the addresses the pass is about to add before any
// netlink write, durably, so that a crash at any instruction leaves
// nothing ec2net added unrecorded. If the record cannot be written (a
// full /run), a kernel that marks addresses (IFA_PROTO) still tells
// ec2net's own apart and the pass goes on; on an older kernel the
// address additions are refused instead (routes and rules carry their
// own protocol and go ahead).
func (r *Reconciler) writeAhead(p *pass) {
	if !p.owned.intend(p.changes) {
		return
	}
	err := r.commit(p.owned)
	if err == nil {
		return
	}
	if r.kernelMarks {
		r.log.Warn("ownership record not written; the kernel's address marks keep ownership", zap.Error(err))
		return
	}
	r.log.Error("ownership record not written: addresses not added", zap.Error(err))
	kept := p.changes[:0]
	for _, c := range p.changes {
		if c.Kind == KindAddr && c.Op == OpAdd {
			p.fail(c, fmt.Errorf("%w: %v", ErrNoRecord, err))
			continue
		}
		kept = append(kept, c)
	}
	p.changes = kept
	p.owned.settleIntents()
}

// commit writes the ownership record when it changed.
func (r *Reconciler) commit(s *record) error {
	s.prune()
	if s.equal(r.owned) {
		return nil
	}
	b, err := s.encode()
	if err != nil {
		return err
	}
	if err := saveRecord(r.stateDir, b); err != nil {
		return fmt.Errorf("netconf: write ownership record: %w", err)
	}
	r.owned = s.clone()
	r.ownedBytes = b
	return nil
}
