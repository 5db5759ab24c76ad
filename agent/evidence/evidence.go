// Package evidence decides when metadata is positive evidence that an
// address or delegated prefix was unassigned.
//
// One IMDS read is not enough: lists lag, a throttled read can come back
// short, and today's tools wiped secondary IPs on one bad answer
// (amazon-ec2-net-utils #161). A Tracker remembers every address and prefix
// it has seen on each ENI and keeps re-inserting one that a read no longer
// lists until N successful reads in a row have not listed it, the first
// and the last of them at least a minimum time apart (so that an
// inconsistency window shorter than that never removes anything). Reads
// that are not Complete (pending, invalid, unknown) are no evidence at all:
// the ENI is held by the reconciler and the miss counters do not move.
//
// Confirm (confirm.go) is the same rule for a process without history.
package evidence

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
)

// Tracker filters snapshots so that removals need evidence. It is safe
// for concurrent use (the daemon reads in a worker and forgets ENIs in its
// loop).
type Tracker struct {
	mu    sync.Mutex
	need  int           // consecutive successful reads without an item
	after time.Duration // between the first and the last of them
	enis  map[string]*eniItems
}

type eniItems struct {
	eniID  string
	misses map[netip.Prefix]*miss // item -> its run of reads without it
	gone   map[netip.Prefix]bool  // items whose removal is proven (until listed again)
}

type miss struct {
	reads int       // consecutive successful reads without the item
	first time.Time // when the first of them was taken
}

// New returns a tracker requiring need consecutive misses (at least 1)
// spanning at least after.
func New(need int, after time.Duration) *Tracker {
	if need < 1 {
		need = 1
	}
	return &Tracker{need: need, after: after, enis: map[string]*eniItems{}}
}

func (t *Tracker) eni(mac, eniID string) *eniItems {
	e := t.enis[mac]
	if e == nil || (eniID != "" && e.eniID != "" && e.eniID != eniID) {
		e = &eniItems{eniID: eniID, misses: map[netip.Prefix]*miss{}, gone: map[netip.Prefix]bool{}}
		t.enis[mac] = e
	}
	if e.eniID == "" {
		e.eniID = eniID
	}
	return e
}

// Forget drops everything known about an ENI (its link went away: a
// re-attach starts from what IMDS says then).
func (t *Tracker) Forget(mac string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.enis, mac)
}

// Retained reports the items that a read no longer lists but that are kept
// because the evidence is not yet sufficient, by MAC.
func (t *Tracker) Retained() map[string][]netip.Prefix {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string][]netip.Prefix{}
	for mac, e := range t.enis {
		for p, m := range e.misses {
			if m.reads > 0 {
				out[mac] = append(out[mac], p)
			}
		}
	}
	return out
}

// Due returns the earliest time at which one more read could confirm the
// removal of a retained item; false when nothing is retained.
func (t *Tracker) Due() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var due time.Time
	found := false
	for _, e := range t.enis {
		for _, m := range e.misses {
			if m.reads == 0 {
				continue
			}
			if d := m.first.Add(t.after); !found || d.Before(due) {
				due, found = d, true
			}
		}
	}
	return due, found
}

// Filter returns a copy of snap in which every Complete ENI still lists the
// items whose removal is not yet proven, and advances the counters. The
// read's time is snap.Taken (now when zero). Call it once per successful
// read.
func (t *Tracker) Filter(snap *imds.Snapshot) *imds.Snapshot {
	if snap == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	taken := takenAt(snap)
	out := *snap
	out.ENIs = make([]imds.ENI, len(snap.ENIs))
	for i, eni := range snap.ENIs {
		out.ENIs[i] = eni
		if eni.State != imds.Complete {
			continue
		}
		e := t.eni(eni.MAC, eni.InterfaceID)
		listed := map[netip.Prefix]bool{}
		for _, p := range Items(&eni) {
			listed[p] = true
			e.misses[p] = &miss{}
			delete(e.gone, p)
		}
		f := &out.ENIs[i]
		f.IPv4 = slices.Clone(eni.IPv4)
		f.IPv6 = slices.Clone(eni.IPv6)
		f.IPv4Prefixes = slices.Clone(eni.IPv4Prefixes)
		f.IPv6Prefixes = slices.Clone(eni.IPv6Prefixes)
		for _, p := range sortedKeys(e.misses) {
			if listed[p] {
				continue
			}
			m := e.misses[p]
			if m.reads == 0 {
				m.first = taken
			}
			m.reads++
			if m.reads >= t.need && taken.Sub(m.first) >= t.after {
				delete(e.misses, p)
				e.gone[p] = true
				continue
			}
			restore(f, p)
		}
	}
	return &out
}

// Items lists an ENI's addresses (as single-address prefixes) and delegated
// prefixes, the things whose removal needs evidence.
func Items(e *imds.ENI) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range e.IPv4 {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	for _, a := range e.IPv6 {
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	out = append(out, e.IPv4Prefixes...)
	out = append(out, e.IPv6Prefixes...)
	return out
}

// restore puts a retained item back where it came from. Addresses are
// appended, so a retained address never becomes the ENI's primary.
func restore(e *imds.ENI, p netip.Prefix) {
	single := p.Bits() == p.Addr().BitLen()
	switch {
	case single && p.Addr().Is4():
		e.IPv4 = append(e.IPv4, p.Addr())
	case single:
		e.IPv6 = append(e.IPv6, p.Addr())
	case p.Addr().Is4():
		e.IPv4Prefixes = append(e.IPv4Prefixes, p)
	default:
		e.IPv6Prefixes = append(e.IPv6Prefixes, p)
	}
}

func sortedKeys(m map[netip.Prefix]*miss) []netip.Prefix {
	keys := make([]netip.Prefix, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return keys
}

// Hold makes the tracker treat items as missed once, at snap's time, and
// returns snap with them re-inserted. It is how a process without history
// (`ec2net apply`, the daemon's first read) keeps what converging to snap
// would remove until a later read confirms it: items maps an ENI's MAC to
// the addresses (single-address prefixes) and delegated prefixes that
// would go. Items of ENIs that are not Complete in snap are ignored.
func (t *Tracker) Hold(snap *imds.Snapshot, items map[string][]netip.Prefix) *imds.Snapshot {
	t.mu.Lock()
	defer t.mu.Unlock()
	taken := takenAt(snap)
	out := *snap
	out.ENIs = slices.Clone(snap.ENIs)
	for i := range out.ENIs {
		f := &out.ENIs[i]
		if f.State != imds.Complete || len(items[f.MAC]) == 0 {
			continue
		}
		f.IPv4, f.IPv6 = slices.Clone(f.IPv4), slices.Clone(f.IPv6)
		f.IPv4Prefixes, f.IPv6Prefixes = slices.Clone(f.IPv4Prefixes), slices.Clone(f.IPv6Prefixes)
		e := t.eni(f.MAC, f.InterfaceID)
		listed := map[netip.Prefix]bool{}
		for _, p := range Items(f) {
			listed[p] = true
		}
		for _, p := range items[f.MAC] {
			if listed[p] || e.gone[p] {
				continue // listed, or its removal already proven
			}
			listed[p] = true
			if m := e.misses[p]; m == nil || m.reads == 0 {
				e.misses[p] = &miss{reads: 1, first: taken}
			}
			restore(f, p)
		}
	}
	return &out
}

// takenAt is when snap was read; a snapshot built without a time (tests,
// hand-made ones) counts as read now.
func takenAt(snap *imds.Snapshot) time.Time {
	if snap.Taken.IsZero() {
		return time.Now()
	}
	return snap.Taken
}
