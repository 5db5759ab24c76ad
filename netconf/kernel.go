package netconf

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/ec2net/ec2net/netconf/plan"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernel is one read of the namespace: every kind dumped once per
// reconcile, no per-object queries.
type kernel struct {
	links   []plan.LinkInfo
	byIndex map[int]*plan.LinkInfo
	byMAC   map[string]*plan.LinkInfo
	addrs   map[int][]kAddr // by link index
	routes  []kRoute        // routes in the per-ENI range, owned routes anywhere, local-table prefixes
	rules   []kRule         // every rule with a source or in our range
}

type kAddr struct {
	prefix netip.Prefix
	flags  int
}

type kRoute struct {
	family   int // 4 or 6
	table    int
	typ      int // unix.RTN_*
	dst      netip.Prefix
	gw       netip.Addr
	src      netip.Addr
	scope    int
	oif      int
	proto    int
	metric   int
	tos      int
	multi    bool // multipath: never equal to a desired route
	consumed bool // matched a desired route in this pass
}

type kRule struct {
	family    int
	prio      int
	src       netip.Prefix // invalid: from all
	table     int
	proto     int
	simple    bool   // only from/lookup/pref: no other selector, action "to table"
	selectors string // the other selectors, iproute2-like, when not simple
	consumed  bool
}

// read dumps links, addresses, routes and rules. driverFor names the links
// whose driver is wanted (ENI links under MTU auto).
func (r *Reconciler) read(driverFor map[string]bool) (*kernel, error) {
	// The rule buffer is reused from pass to pass: thousands of rules
	// would otherwise be reallocated each time. Nothing keeps a pointer
	// into it beyond a pass.
	k := &kernel{byIndex: map[int]*plan.LinkInfo{}, byMAC: map[string]*plan.LinkInfo{}, addrs: map[int][]kAddr{},
		rules: r.ruleBuf[:0]}
	// Addresses and rules are the big dumps (thousands each on a busy
	// instance): they run concurrently, each on its own socket, while
	// links and owned routes are read here.
	var wg sync.WaitGroup
	var addrErr, ruleErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		addrErr = retryDump(func() error {
			k.addrs = map[int][]kAddr{}
			return r.raw.dumpAddrs(k)
		})
	}()
	go func() {
		defer wg.Done()
		ruleErr = retryDump(func() error {
			k.rules = k.rules[:0]
			return r.rules.dumpRules(k)
		})
	}()
	var links []plan.LinkInfo
	linkErr := retryDump(func() (err error) {
		links, err = r.links.dumpLinks()
		return err
	})
	routeErr := retryDump(func() error {
		k.routes = k.routes[:0]
		return r.readOwnedRoutes(k)
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
	r.ruleBuf = k.rules
	for _, li := range links {
		if driverFor[li.MAC] {
			li.Driver = r.driver(li.Name)
		}
		k.links = append(k.links, li)
	}
	for i := range k.links {
		l := &k.links[i]
		k.byIndex[l.Index] = l
		if l.MAC != "" {
			if prev, ok := k.byMAC[l.MAC]; !ok || l.Index < prev.Index {
				k.byMAC[l.MAC] = l
			}
		}
	}
	return k, nil
}

// retryDump repeats a dump the kernel reports as interrupted (the object
// set changed while it was read): an inconsistent dump is never diffed.
func retryDump(fn func() error) error {
	var err error
	for i := 0; i < 5; i++ {
		if err = fn(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}

// readOwnedRoutes dumps every route carrying Protocol, in any table,
// filtered by the kernel (strict checking) rather than by us: a full dump
// would drag the local table (a route per address, thousands on a busy
// instance) through userspace on every pass.
func (r *Reconciler) readOwnedRoutes(k *kernel) error {
	return r.strict.dumpRoutes(0, Protocol, func(kr kRoute) { k.routes = append(k.routes, kr) })
}

// readTables adds the foreign routes of the given tables (one dump each,
// filtered by the kernel).
func (r *Reconciler) readTables(k *kernel, tables map[int]bool) error {
	ts := make([]int, 0, len(tables))
	for t := range tables {
		ts = append(ts, t)
	}
	sort.Ints(ts)
	for _, t := range ts {
		n := len(k.routes)
		err := retryDump(func() error {
			k.routes = k.routes[:n]
			return r.strict.dumpRoutes(t, 0, func(kr kRoute) {
				if kr.proto != Protocol { // owned ones are already read
					k.routes = append(k.routes, kr)
				}
			})
		})
		if err != nil {
			return fmt.Errorf("list routes of table %d: %w", t, err)
		}
	}
	return nil
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
