package daemon

import (
	"time"

	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/plan"
)

// linkTracker remembers the namespace's links (those with a MAC) to tell,
// from one re-read after a burst of link events, which appeared, which
// went and whether any changed name or flags.
type linkTracker struct {
	known    map[int]plan.LinkInfo // by ifindex
	appeared map[string]time.Time  // MAC -> when its link appeared, while IMDS does not list it yet
	wait     time.Duration         // how long such a link is re-read for (propagation-wait)
}

func newLinkTracker(wait time.Duration) *linkTracker {
	return &linkTracker{known: map[int]plan.LinkInfo{}, appeared: map[string]time.Time{}, wait: wait}
}

// seed records the links that exist at start: they are not attaches.
func (t *linkTracker) seed(links []plan.LinkInfo) {
	for _, l := range links {
		if isENILink(l) {
			t.known[l.Index] = l
		}
	}
}

func isENILink(l plan.LinkInfo) bool {
	return l.MAC != "" && l.MAC != "00:00:00:00:00:00" && l.Name != "lo"
}

type linkChanges struct {
	appeared []plan.LinkInfo // a MAC not seen at this index: attach or re-attach
	gone     []plan.LinkInfo // detach
	changed  bool            // a known link was renamed or changed flags, MTU or altnames
}

// update compares a fresh link list with what is known.
func (t *linkTracker) update(links []plan.LinkInfo, now time.Time) linkChanges {
	var ch linkChanges
	seen := map[int]bool{}
	for _, l := range links {
		if !isENILink(l) {
			continue
		}
		seen[l.Index] = true
		old, ok := t.known[l.Index]
		t.known[l.Index] = l
		switch {
		case !ok || old.MAC != l.MAC:
			ch.appeared = append(ch.appeared, l)
			t.appeared[l.MAC] = now
		case old.Name != l.Name || old.Up != l.Up || old.MTU != l.MTU || len(old.AltNames) != len(l.AltNames):
			ch.changed = true
		}
	}
	for index, l := range t.known {
		if !seen[index] {
			delete(t.known, index)
			delete(t.appeared, l.MAC)
			ch.gone = append(ch.gone, l)
		}
	}
	return ch
}

// pendingWithLink lists the ENIs of snap that are still propagating and
// have a link here: peekable ones wait on a single key, the others are
// re-read blind. Pending ENIs without a link (EFA-only interfaces, or a
// link still to come) cost nothing.
func (t *linkTracker) pendingWithLink(snap *imds.Snapshot) (peekable, blind []string) {
	if snap == nil {
		return nil, nil
	}
	for _, e := range snap.ENIs {
		if (e.State != imds.Pending && e.State != imds.Unknown) || !t.hasLink(e.MAC) {
			continue
		}
		if e.State == imds.Pending && e.WaitKey != "" {
			peekable = append(peekable, e.MAC)
		} else {
			blind = append(blind, e.MAC)
		}
	}
	return peekable, blind
}

// unlisted lists the links that appeared recently whose MAC IMDS does not
// list yet (IMDS propagates asynchronously: the NIC can appear first).
// They are re-read for propagation-wait, then left to the periodic
// refresh (they may not be ENIs at all).
func (t *linkTracker) unlisted(snap *imds.Snapshot, now time.Time) []string {
	var out []string
	for mac, since := range t.appeared {
		if snap.ENI(mac) != nil || now.Sub(since) > t.wait {
			delete(t.appeared, mac)
			continue
		}
		out = append(out, mac)
	}
	return out
}

// linkedMACs lists the ENIs of snap that have a link here: what a quiet
// refresh reads (1 + 4 requests each).
func (t *linkTracker) linkedMACs(snap *imds.Snapshot) []string {
	var out []string
	if snap == nil {
		return out
	}
	for _, e := range snap.ENIs {
		if t.hasLink(e.MAC) {
			out = append(out, e.MAC)
		}
	}
	return out
}

func (t *linkTracker) hasLink(mac string) bool {
	for _, l := range t.known {
		if l.MAC == mac {
			return true
		}
	}
	return false
}
