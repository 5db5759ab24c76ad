package daemon

import (
	"slices"
	"strings"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
)

// Two reads can be under way at once (reads.go: a new link's read does
// not wait behind a slow refresh), so a result may arrive older than what
// the loop already knows. merge keeps, for every ENI, the data of the
// read that started last, and the listing (which ENIs exist) of the read
// that started last; an older result changes only what nothing newer
// has read.
type freshness struct {
	listedAt time.Time            // start of the read whose listing l.raw holds
	readAt   map[string]time.Time // MAC -> start of the read that gave its data
}

// merge folds a read into cur (raw) and curF (filtered: the evidence rule
// applied) and returns both.
func (f *freshness) merge(cur, curF *imds.Snapshot, r readResult) (*imds.Snapshot, *imds.Snapshot) {
	if f.readAt == nil {
		f.readAt = map[string]time.Time{}
	}
	if cur == nil || curF == nil {
		f.listedAt = r.started
		for _, e := range r.raw.ENIs {
			f.readAt[e.MAC] = r.started
		}
		return r.raw, r.snap
	}
	newer := !r.started.Before(f.listedAt)
	take := map[string]bool{} // MACs whose ENI comes from r
	keep := map[string]bool{} // MACs of cur that stay
	inRes := map[string]bool{}
	for _, e := range r.raw.ENIs {
		inRes[e.MAC] = true
		read := r.full || slices.Contains(r.macs, e.MAC)
		switch {
		case read && !r.started.Before(f.readAt[e.MAC]):
			take[e.MAC] = true
		case cur.ENI(e.MAC) == nil && newer:
			take[e.MAC] = true // listed since: as the newer listing has it
		}
	}
	for _, e := range cur.ENIs {
		if !take[e.MAC] && (inRes[e.MAC] || !newer) {
			keep[e.MAC] = true
		}
	}
	for mac := range take {
		f.readAt[mac] = r.started
	}
	if newer {
		f.listedAt = r.started
		for mac := range f.readAt {
			if !take[mac] && !keep[mac] {
				delete(f.readAt, mac)
			}
		}
	}
	return pick(cur, r.raw, take, keep, newer), pick(curF, r.snap, take, keep, newer)
}

func pick(cur, res *imds.Snapshot, take, keep map[string]bool, newer bool) *imds.Snapshot {
	out := *cur
	if newer {
		out.PrimaryMAC, out.Taken = res.PrimaryMAC, res.Taken
	}
	out.ENIs = nil
	for _, e := range cur.ENIs {
		if keep[e.MAC] {
			out.ENIs = append(out.ENIs, e)
		}
	}
	for _, e := range res.ENIs {
		if take[e.MAC] {
			out.ENIs = append(out.ENIs, e)
		}
	}
	slices.SortFunc(out.ENIs, func(a, b imds.ENI) int { return strings.Compare(a.MAC, b.MAC) })
	return &out
}
