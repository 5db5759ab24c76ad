package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
)

// The last line of the guard that keeps the host reachable. The planner
// never builds a rule that could capture the primary's or IMDS's traffic
// (netconf/plan/guard.go), but if IMDS stops answering right after a
// change ec2net made, that change is the first suspect and nothing could
// ever correct it (IMDS is where corrections come from). So: after a pass
// that added something, one cheap read checks that IMDS still answers;
// if it does not (no answer at all: not a 403, not a 5xx), the pass is
// rolled back and its ENIs are held. When IMDS answers again they are
// tried once more (the outage may have been a coincidence); a second
// cut-off holds them until their metadata changes.
const (
	cutoffCheck  = time.Second      // how soon after a change IMDS is checked
	cutoffWindow = 30 * time.Second // a failure this soon after a change is its suspect
)

type cutoffGuard struct {
	adds     []netconf.Change // what the last pass that added something added
	at       time.Time
	verified bool // IMDS answered after it

	strikes map[string]int    // MAC -> rollbacks
	held    map[string]string // MAC -> metadata fingerprint while held; "" after the first strike
}

func newCutoffGuard() *cutoffGuard {
	return &cutoffGuard{strikes: map[string]int{}, held: map[string]string{}}
}

// applied remembers a pass's additions; true when there were some (IMDS
// should then be checked).
func (g *cutoffGuard) applied(res *netconf.Result, now time.Time) bool {
	var adds []netconf.Change
	for _, e := range res.ENIs {
		for _, c := range e.Applied {
			if c.Op == netconf.OpAdd && c.Kind != netconf.KindLink && c.MAC != "" {
				adds = append(adds, c)
			}
		}
	}
	if len(adds) == 0 {
		return false
	}
	g.adds, g.at, g.verified = adds, now, false
	return true
}

// suspect reports whether a failed read points at the last change: no
// answer at all, soon after it, with no successful read in between.
func (g *cutoffGuard) suspect(err error, now time.Time) bool {
	unanswered := errors.Is(err, imds.ErrUnreachable) || errors.Is(err, context.DeadlineExceeded)
	if !unanswered {
		// A 5xx or a 403 is an answer: IMDS is reachable after the change.
		g.verified = true
	}
	return unanswered && len(g.adds) > 0 && !g.verified && now.Sub(g.at) < cutoffWindow
}

// rollback returns what to undo and holds its ENIs.
func (g *cutoffGuard) rollback(snap *imds.Snapshot) []netconf.Change {
	undo := g.adds
	g.adds = nil
	for _, c := range undo {
		if _, already := g.held[c.MAC]; already {
			continue
		}
		g.strikes[c.MAC]++
		g.held[c.MAC] = ""
		if g.strikes[c.MAC] > 1 {
			g.held[c.MAC] = fingerprint(snap.ENI(c.MAC))
		}
	}
	return undo
}

// answered notes a successful read: the last change is verified, and
// ENIs held after a first cut-off get one more try; after a second, only
// once their metadata has changed.
func (g *cutoffGuard) answered(snap *imds.Snapshot) (released []string) {
	g.verified = true
	for mac, fp := range g.held {
		if fp == "" || fp != fingerprint(snap.ENI(mac)) {
			delete(g.held, mac)
			released = append(released, mac)
		}
	}
	return released
}

// filter marks the held ENIs invalid in a copy of snap, so the planner
// adds nothing to them and removes nothing.
func (g *cutoffGuard) filter(snap *imds.Snapshot) *imds.Snapshot {
	if len(g.held) == 0 || snap == nil {
		return snap
	}
	out := *snap
	out.ENIs = append([]imds.ENI(nil), snap.ENIs...)
	for i := range out.ENIs {
		if _, held := g.held[out.ENIs[i].MAC]; held && out.ENIs[i].State == imds.Complete {
			out.ENIs[i].State = imds.Invalid
			out.ENIs[i].Reason = fmt.Sprintf("held: IMDS stopped answering right after ec2net configured it (%d times); its changes were rolled back", g.strikes[out.ENIs[i].MAC])
		}
	}
	return &out
}

func fingerprint(e *imds.ENI) string {
	if e == nil {
		return "gone"
	}
	return fmt.Sprint(e.State, e.DeviceNumber, e.NetworkCard, e.SubnetIPv4, e.SubnetIPv6, e.IPv4, e.IPv6, e.IPv4Prefixes, e.IPv6Prefixes)
}
