// Package evidence decides when metadata is positive evidence that an
// address or delegated prefix was unassigned.
//
// One IMDS read is not enough: lists lag, a throttled read can come back
// short, and today's tools wiped secondary IPs on one bad answer
// (amazon-ec2-net-utils #161). A Tracker remembers every address and prefix
// it has seen on each ENI and keeps re-inserting one that a read no longer
// lists until N successful reads in a row have not listed it. Reads that are
// not Complete (pending, invalid, unknown) are no evidence at all: the ENI
// is held by the reconciler and the miss counters do not move.
package evidence

import (
	"net/netip"
	"slices"

	"github.com/ec2net/ec2net/agent/imds"
)

// Tracker filters snapshots so that removals need Need consecutive misses.
// It is not safe for concurrent use.
type Tracker struct {
	need int
	enis map[string]*eniItems // by MAC
}

type eniItems struct {
	eniID  string
	misses map[netip.Prefix]int // item -> consecutive successful reads without it
}

// New returns a tracker requiring need consecutive misses (at least 1).
func New(need int) *Tracker {
	if need < 1 {
		need = 1
	}
	return &Tracker{need: need, enis: map[string]*eniItems{}}
}

func (t *Tracker) eni(mac, eniID string) *eniItems {
	e := t.enis[mac]
	if e == nil || (eniID != "" && e.eniID != "" && e.eniID != eniID) {
		e = &eniItems{eniID: eniID, misses: map[netip.Prefix]int{}}
		t.enis[mac] = e
	}
	if e.eniID == "" {
		e.eniID = eniID
	}
	return e
}

// Forget drops everything known about an ENI (its link went away: a
// re-attach starts from what IMDS says then).
func (t *Tracker) Forget(mac string) { delete(t.enis, mac) }

// Retained reports the items that a read no longer lists but that are kept
// because the evidence is not yet sufficient, by MAC.
func (t *Tracker) Retained() map[string][]netip.Prefix {
	out := map[string][]netip.Prefix{}
	for mac, e := range t.enis {
		for p, n := range e.misses {
			if n > 0 {
				out[mac] = append(out[mac], p)
			}
		}
	}
	return out
}

// Filter returns a copy of snap in which every Complete ENI still lists the
// items it lost fewer than Need reads ago, and advances the counters.
// Call it once per successful read.
func (t *Tracker) Filter(snap *imds.Snapshot) *imds.Snapshot {
	if snap == nil {
		return nil
	}
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
			e.misses[p] = 0
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
			e.misses[p]++
			if e.misses[p] >= t.need {
				delete(e.misses, p)
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

func sortedKeys(m map[netip.Prefix]int) []netip.Prefix {
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
