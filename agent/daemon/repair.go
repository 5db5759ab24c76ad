package daemon

import (
	"fmt"
	"strings"
	"time"

	"github.com/ec2net/ec2net/netconf"
	"go.uber.org/zap"
)

// Repairs are fast for one-off deletions and patient only with a real
// fight. Another program deleting ec2net's objects once (systemd-networkd
// on restart, NetworkManager reapplying a device) is repaired within
// repairSettle; only when the same objects are deleted again within
// fightWindow of their repair, fightAfter times in a row, do repairs back
// off, doubling up to fightMax, so that ec2net never fights another manager
// in a tight loop.
const (
	repairSettle = 20 * time.Millisecond // let a burst of deletions land first
	fightWindow  = 5 * time.Second
	fightAfter   = 3
	fightMax     = time.Minute
)

type repairPolicy struct {
	armed    bool            // a repair is scheduled
	fights   int             // consecutive repairs of objects repaired within fightWindow
	last     time.Time       // when the last repair wrote something
	lastObjs map[string]bool // what it restored
	deletedN netconf.Deleted // deletions seen since the last repair
	suspect  func(netconf.Deleted) string
}

func newRepairPolicy() *repairPolicy {
	return &repairPolicy{suspect: func(netconf.Deleted) string { return "" }}
}

// deleted accumulates deletion notifications until the next repair.
func (p *repairPolicy) deleted(d netconf.Deleted) {
	p.deletedN.Addrs += d.Addrs
	p.deletedN.Routes += d.Routes
	p.deletedN.Rules += d.Rules
	p.deletedN.OwnedAddrs += d.OwnedAddrs
	p.deletedN.OwnedRoutes += d.OwnedRoutes
	p.deletedN.OwnedRules += d.OwnedRules
}

// delay is how long to wait before the next repair.
func (p *repairPolicy) delay() time.Duration {
	if p.fights < fightAfter {
		return repairSettle
	}
	return min(time.Second<<min(p.fights-fightAfter, 10), fightMax)
}

// repaired records a repair's result and logs the burst: what was
// restored, how many, and who probably deleted it.
func (p *repairPolicy) repaired(now time.Time, res *netconf.Result, log *zap.Logger) {
	deleted := p.deletedN
	p.deletedN = netconf.Deleted{}
	objs := map[string]bool{}
	kinds := map[netconf.Kind]int{}
	for _, e := range res.ENIs {
		for _, c := range e.Applied {
			if c.Op != netconf.OpDel {
				objs[c.Text()] = true
				kinds[c.Kind]++
			}
		}
	}
	if len(objs) == 0 {
		return // nothing of ours was missing: not a repair
	}
	again := false
	if now.Sub(p.last) < fightWindow {
		for o := range objs {
			if p.lastObjs[o] {
				again = true
				break
			}
		}
	}
	if again {
		p.fights++
	} else {
		p.fights = 0
	}
	p.last, p.lastObjs = now, objs
	fields := []zap.Field{zap.Int("restored", len(objs)), zap.String("kinds", kindCounts(kinds)),
		zap.Int("deletions_seen", deleted.Total())}
	if s := p.suspect(deleted); s != "" {
		fields = append(fields, zap.String("suspect", s))
	}
	if p.fights >= fightAfter {
		fields = append(fields, zap.Int("times_in_a_row", p.fights), zap.Duration("next_repair_after", p.delay()))
		log.Warn("another program keeps deleting what ec2net restores; backing off", fields...)
		return
	}
	log.Warn("restored what another program deleted", fields...)
}

func kindCounts(k map[netconf.Kind]int) string {
	var parts []string
	for _, kind := range []netconf.Kind{netconf.KindAddr, netconf.KindRoute, netconf.KindRule, netconf.KindLink} {
		if k[kind] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", k[kind], kind))
		}
	}
	return strings.Join(parts, ", ")
}
