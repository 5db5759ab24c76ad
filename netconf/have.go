package netconf

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"github.com/ec2net/ec2net/netconf/plan"
	"golang.org/x/sys/unix"
)

// have is one read of the namespace, the "have" side of every comparison:
// every kind dumped once per pass, no per-object queries.
type have struct {
	links  plan.Links
	addrs  map[int][]rtnl.Addr // by link index
	ra     map[int]bool        // ENI links that take router advertisements
	routes []kRoute            // owned routes anywhere, foreign ones of the tables read
	rules  []kRule             // every rule with a source or in or into our range
}

// kRoute and kRule are kernel objects with the pass's bookkeeping.
type kRoute struct {
	rtnl.Route
	consumed bool // matched a wanted route in this pass
}

type kRule struct {
	rtnl.Rule
	consumed bool
}

func (h *have) link(mac string) *plan.LinkInfo { return h.links.ByMAC[mac] }

func (h *have) acceptsRA(index int) bool { return h.ra[index] }

// devName is a link's name for printing.
func (h *have) devName(index int) string {
	if l := h.links.ByIndex[index]; l != nil {
		return l.Name
	}
	if index == 0 {
		return ""
	}
	return fmt.Sprintf("if%d", index)
}

// read dumps links, addresses, owned routes and rules (dumpAll) and
// indexes the links. enis names the ENI links, whose driver (under MTU
// auto) is read too, and whose accept_ra (from the link dump) is noted.
func (r *Reconciler) read(enis map[string]bool, mtuAuto bool) (*have, error) {
	// The rule buffer is reused from pass to pass: thousands of rules
	// would otherwise be reallocated each time. Nothing keeps a pointer
	// into it beyond a pass.
	h := &have{addrs: map[int][]rtnl.Addr{}, rules: r.ruleBuf[:0]}
	links, err := r.dumpAll(h)
	if err != nil {
		return nil, err
	}
	r.ruleBuf = h.rules
	infos := make([]plan.LinkInfo, len(links))
	h.ra = map[int]bool{}
	for i, l := range links {
		infos[i] = plan.LinkInfo{Index: l.Index, Name: l.Name, MAC: l.MAC, MTU: l.MTU, Up: l.Up, AltNames: l.AltNames}
		if enis[l.MAC] {
			if mtuAuto {
				infos[i].Driver = r.driver(l.Name)
			}
			// Where ec2net cannot change it anyway, it is not a change
			// to make.
			h.ra[l.Index] = l.AcceptRA && !r.sysctlReadOnly
		}
	}
	h.links = plan.IndexLinks(infos)
	h.links.Addrs = make(map[int][]netip.Addr, len(h.addrs))
	for index, as := range h.addrs {
		for _, a := range as {
			h.links.Addrs[index] = append(h.links.Addrs[index], a.Prefix.Addr())
		}
	}
	return h, nil
}

// dumpAll fills h's addresses, rules and owned routes and returns the
// links: the four dumps side by side, read as one. Addresses and rules
// are the big dumps (thousands each on a busy instance): they run
// concurrently, each on its own socket, while links and owned routes are
// read here.
func (r *Reconciler) dumpAll(h *have) ([]rtnl.Link, error) {
	var wg sync.WaitGroup
	var addrErr, ruleErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		addrErr = rtnl.RetryDump(func() error {
			h.addrs = map[int][]rtnl.Addr{}
			return r.addrDumper.Addrs(func(a rtnl.Addr) {
				if a.Proto == Protocol && !r.noAddrProto {
					r.kernelMarks = true
				}
				l := h.addrs[a.Index]
				if l == nil {
					l = make([]rtnl.Addr, 0, 16)
				}
				h.addrs[a.Index] = append(l, a)
			})
		})
	}()
	go func() {
		defer wg.Done()
		ruleErr = rtnl.RetryDump(func() error {
			h.rules = h.rules[:0]
			return r.ruleDumper.Rules(func(ru rtnl.Rule) {
				if ru.Proto == Protocol || plan.InRange(ru.Priority) || plan.InRange(ru.Table) || ru.Src.IsValid() {
					h.rules = append(h.rules, kRule{Rule: ru})
				}
			})
		})
	}()
	var links []rtnl.Link
	linkErr := rtnl.RetryDump(func() (err error) {
		links, err = r.linkDumper.Links()
		return err
	})
	// Every route carrying Protocol, in any table, filtered by the kernel
	// (strict checking) rather than here: a full dump would drag the local
	// table (a route per address) through userspace on every pass.
	routeErr := rtnl.RetryDump(func() error {
		h.routes = h.routes[:0]
		return r.routeDumper.Routes(0, Protocol, func(rt rtnl.Route) { h.routes = append(h.routes, kRoute{Route: rt}) })
	})
	wg.Wait()
	for _, e := range []struct {
		what string
		err  error
	}{{"links", linkErr}, {"addresses", addrErr}, {"rules", ruleErr}, {"routes", routeErr}} {
		if e.err != nil {
			return nil, fmt.Errorf("list %s: %w", e.what, e.err)
		}
	}
	return links, nil
}

// readTables adds the foreign routes of the given tables (one dump each,
// filtered by the kernel).
func (r *Reconciler) readTables(h *have, tables map[int]bool) error {
	ts := make([]int, 0, len(tables))
	for t := range tables {
		ts = append(ts, t)
	}
	sort.Ints(ts)
	for _, t := range ts {
		n := len(h.routes)
		err := rtnl.RetryDump(func() error {
			h.routes = h.routes[:n]
			return r.routeDumper.Routes(t, 0, func(rt rtnl.Route) {
				if rt.Proto != Protocol { // owned ones are already read
					h.routes = append(h.routes, kRoute{Route: rt})
				}
			})
		})
		if err != nil {
			return fmt.Errorf("list routes of table %d: %w", t, err)
		}
	}
	return nil
}

// addrsOn returns a link's addresses by IP.
func (h *have) addrsOn(index int) map[netip.Addr]*rtnl.Addr {
	l := h.addrs[index]
	m := make(map[netip.Addr]*rtnl.Addr, len(l))
	for i := range l {
		m[l[i].Prefix.Addr()] = &l[i]
	}
	return m
}

// driver returns the link's driver name via the ethtool ioctl on a socket
// created inside the namespace (sysfs would show the namespace of whoever
// mounted /sys, not ours). "" when the link has no ethtool support.
func (r *Reconciler) driver(name string) string {
	if r.ethFD < 0 {
		return ""
	}
	info, err := unix.IoctlGetEthtoolDrvinfo(r.ethFD, name)
	if err != nil {
		return ""
	}
	return unix.ByteSliceToString(info.Driver[:])
}
