package main

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/vishvananda/netlink"
)

func probeAll(ctx context.Context, vpc *vpcsim.VPC, all []netip.Addr) (failed int) {
	for _, a := range all {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		out, err := vpc.ProbeTCP(pctx, a)
		cancel()
		in := "ok"
		pctx, cancel = context.WithTimeout(ctx, 2*time.Second)
		if _, ierr := vpc.ProbeInbound(pctx, a); ierr != nil {
			in = "FAIL"
			failed++
		}
		cancel()
		switch {
		case err != nil:
			fmt.Printf("  %-18s out: FAIL (%s)   in: %s\n", a, reason(err), in)
			failed++
		default:
			fmt.Printf("  %-18s out: ok (remote saw %s)   in: %s\n", a, out.SeenSource, in)
		}
	}
	return failed
}

// passes says whether a carries traffic both ways from inst now: short
// probes, for polling.
func passes(ctx context.Context, inst *vpcsim.Instance, a netip.Addr) bool {
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if r, err := inst.ProbeTCP(pctx, a); err != nil || r.SeenSource != a {
		return false
	}
	_, err := inst.ProbeInbound(pctx, a)
	return err == nil
}

// waitFor polls cond every 20 ms until it holds, ctx ends or within
// passes, and returns how long it took.
func waitFor(ctx context.Context, within time.Duration, what string, cond func() bool) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: not within %v", what, within)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	return time.Since(start), nil
}

// leftovers lists what inst still has of an ENI that left it: its link,
// addresses, rules (from its addresses or to its table) and routes in its
// table.
func leftovers(vpc *vpcsim.VPC, inst *vpcsim.Instance, e vpcsim.ENISpec, table int) ([]string, error) {
	h, err := vpc.Handle(inst.Name)
	if err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	mine := map[netip.Addr]bool{}
	for _, a := range append(append([]netip.Addr{}, e.IPv4...), e.IPv6...) {
		mine[a] = true
	}
	var out []string
	if name := inst.LinkName(e.MAC); name != "" {
		out = append(out, "link "+name)
	}
	addrs, err := nl.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && mine[ip.Unmap()] {
			out = append(out, "address "+a.IPNet.String())
		}
	}
	rules, err := nl.RuleList(netlink.FAMILY_ALL)
	if err != nil {
		return nil, err
	}
	for _, r := range rules {
		src := ""
		if r.Src != nil {
			src = r.Src.String()
			if ip, ok := netip.AddrFromSlice(r.Src.IP); ok && mine[ip.Unmap()] {
				out = append(out, fmt.Sprintf("rule from %s lookup %d", src, r.Table))
				continue
			}
		}
		if r.Table == table {
			out = append(out, fmt.Sprintf("rule from %s lookup %d", src, r.Table))
		}
	}
	routes, err := nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	for _, r := range routes {
		out = append(out, fmt.Sprintf("route %v table %d", r.Dst, table))
	}
	return out, nil
}

// reason shortens a probe error for the demo's table.
func reason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "assign requested address"), strings.Contains(msg, "not assigned"):
		return "address not configured"
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "deadline"):
		return "no answer: dropped"
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

func addrsOf(s vpcsim.ENISpec) []netip.Addr {
	return append(append([]netip.Addr{}, s.IPv4...), s.IPv6...)
}
