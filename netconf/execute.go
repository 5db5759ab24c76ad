package netconf

import (
	"fmt"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"go.uber.org/zap"
)

// execute makes a pass's changes: every netlink write of ec2net goes
// through here, counted, and the ownership record follows what succeeded.
func (r *Reconciler) execute(p *pass) (*Result, error) {
	before := r.writes
	r.writes += len(p.changes)
	errs := r.w.Send(len(p.changes), func(i int, m *rtnl.Msg) { p.changes[i].encode(m) })
	for i, c := range p.changes {
		res := p.result(c.MAC)
		created, err := c.settle(errs[i])
		if err != nil {
			res.Failed = append(res.Failed, ChangeError{Change: c, Err: err})
			r.log.Warn("change failed", zap.String("mac", c.MAC), zap.Stringer("change", c), zap.Error(err))
			continue
		}
		res.Applied = append(res.Applied, c)
		p.owned.note(c, created)
		r.log.Debug("applied", zap.String("mac", c.MAC), zap.Stringer("change", c))
	}
	for _, mac := range p.forget {
		if res := p.results[mac]; res == nil || len(res.Failed) == 0 {
			delete(p.owned.ENIs, mac)
		}
	}
	out := p.outcome()
	out.Writes = r.writes - before
	if err := r.commit(p.owned); err != nil {
		return out, err
	}
	return out, nil
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
	r.owned = s
	return nil
}
