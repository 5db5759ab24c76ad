package netconf

import "net/netip"

// Revert undoes what an earlier pass added: every added address, route
// and rule in applied is deleted (link settings stay). The daemon uses it
// when IMDS became unreachable right after a change, the one sign that
// the change cut the host off.
func (r *Reconciler) Revert(applied []Change) (*Result, error) {
	end, err := r.begin(true)
	if err != nil {
		return nil, err
	}
	defer end()
	p := &pass{kind: passApply, have: &have{}, owned: r.owned.clone(), results: map[string]*ENIResult{}}
	for _, c := range applied {
		if c.Op != OpAdd || c.Kind == KindLink {
			continue
		}
		undo := c
		undo.Op = OpDel
		undo.Route.Src = netip.Addr{} // deletions match without it
		p.add(undo)
	}
	sortByPhase(p.changes)
	return r.execute(p)
}
