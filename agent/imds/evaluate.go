package imds

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// finish applies the checks that need the whole instance, updates the
// cache and assembles the snapshot. results must be sorted by MAC; each
// one's ENI carries the state its own reads gave it (or, merged from an
// earlier snapshot, remembers it), so the checks can run again.
func (c *Client) finish(results []eniResult, primary string) *Snapshot {
	anyCard := false
	for _, r := range results {
		if r.eni.HasNetworkCard {
			anyCard = true
		}
	}
	snap := &Snapshot{PrimaryMAC: primary, ENIs: make([]ENI, len(results)), Taken: time.Now()}
	for i, r := range results {
		e := r.eni
		e.restoreRead()
		if e.State == Complete {
			evaluate(&e, anyCard)
		}
		snap.ENIs[i] = e
	}
	markDuplicateDevices(snap.ENIs)
	markSharedAddresses(snap.ENIs)

	c.mu.Lock()
	for i, r := range results {
		e := &snap.ENIs[i]
		switch {
		case e.State == Complete, e.State == Pending && e.NoAddresses:
			// An ENI without addresses has its fixed keys settled (that
			// is part of NoAddresses): an EFA-only interface costs four
			// reads a refresh, like any other.
			if r.fixed != nil {
				c.fixed[r.eni.MAC] = r.fixed
			}
		case e.State == Pending, e.State == Invalid:
			// Re-read the fixed keys next time: what made it pending or
			// invalid may be a fixed key that has changed since (a subnet
			// given an IPv6 CIDR, a re-attach).
			delete(c.fixed, r.eni.MAC)
		}
	}
	c.mu.Unlock()
	return snap
}

// restoreRead puts the ENI back in the state its own reads gave it, and
// remembers that state the first time.
func (e *ENI) restoreRead() {
	if !e.read.set {
		e.read = readVerdict{set: true, state: e.State, reason: e.Reason,
			waitKey: e.WaitKey, waitValue: e.WaitValue, waitAbsent: e.WaitAbsent}
		return
	}
	e.State, e.Reason = e.read.state, e.read.reason
	e.wait(e.read.waitKey, e.read.waitValue, e.read.waitAbsent)
	e.NoAddresses = false
}

// evaluate validates an ENI whose every read succeeded and decides
// whether it is Complete, Pending or Invalid.
func evaluate(e *ENI, anyCard bool) {
	if n := len(e.IPv4) + len(e.IPv4LinkLocal) + len(e.IPv6); n > MaxAddresses {
		e.State, e.Reason = Invalid, fmt.Sprintf("%d addresses (limit %d)", n, MaxAddresses)
		return
	}
	if why := guard(e); why != "" {
		e.State, e.Reason = Invalid, why
		return
	}
	if why := outsideSubnet(e); why != "" {
		e.State, e.Reason = Invalid, why
		return
	}
	pending := func(reason, key, value string, absent bool) {
		e.State, e.Reason = Pending, reason
		e.wait(key, value, absent)
	}
	noAddr := len(e.IPv4)+len(e.IPv4LinkLocal)+len(e.IPv6)+len(e.IPv4Prefixes)+len(e.IPv6Prefixes) == 0
	switch {
	case !e.Primary && e.DeviceNumber == 0 && e.NetworkCard == 0:
		pending("device-number 0 on a secondary ENI (not yet propagated)", "device-number", "0", false)
	case !e.HasNetworkCard && anyCard:
		pending("no network-card while other ENIs have one (not yet propagated)", "network-card", "", true)
	case noAddr:
		// EFA-only, or lag: see ENI.NoAddresses. The key to watch is the
		// one the ENI's subnet says must come.
		e.NoAddresses = true
		key := "local-ipv4s"
		if !e.SubnetIPv4.IsValid() && len(e.SubnetIPv6) > 0 {
			key = "ipv6s"
		}
		pending("no address or prefix listed in either family (EFA-only interface, or not yet propagated)", key, "", true)
	case (len(e.IPv4) > 0 || len(e.IPv4Prefixes) > 0) && !e.SubnetIPv4.IsValid():
		pending("IPv4 addresses but no subnet-ipv4-cidr-block (not yet propagated)", "subnet-ipv4-cidr-block", "", true)
	case (len(e.IPv6) > 0 || len(e.IPv6Prefixes) > 0) && len(e.SubnetIPv6) == 0:
		pending("IPv6 addresses but no subnet-ipv6-cidr-blocks (not yet propagated)", "subnet-ipv6-cidr-blocks", "", true)
	case e.SubnetIPv4.IsValid() && len(e.IPv4) == 0:
		// An ENI in a subnet with an IPv4 CIDR always has a primary
		// private IPv4; a 404 on local-ipv4s then is lag (or a fault),
		// never evidence that its IPv4 addresses are gone.
		pending("subnet has an IPv4 CIDR but local-ipv4s lists nothing (not yet propagated)",
			"local-ipv4s", addrLines(e.IPv4LinkLocal), len(e.IPv4LinkLocal) == 0)
	}
}

// outsideSubnet says which address or prefix lies outside the ENI's
// subnet of its family, or "".
func outsideSubnet(e *ENI) string {
	if e.SubnetIPv4.IsValid() {
		for _, a := range e.IPv4 {
			if !e.SubnetIPv4.Contains(a) {
				return fmt.Sprintf("address %v outside subnet %v", a, e.SubnetIPv4)
			}
		}
		for _, p := range e.IPv4Prefixes {
			if !prefixWithin(p, e.SubnetIPv4) {
				return fmt.Sprintf("prefix %v outside subnet %v", p, e.SubnetIPv4)
			}
		}
	}
	if len(e.SubnetIPv6) > 0 {
		for _, a := range e.IPv6 {
			if !slices.ContainsFunc(e.SubnetIPv6, func(s netip.Prefix) bool { return s.Contains(a) }) {
				return fmt.Sprintf("address %v outside subnet %v", a, prefixesString(e.SubnetIPv6))
			}
		}
		for _, p := range e.IPv6Prefixes {
			if !slices.ContainsFunc(e.SubnetIPv6, func(s netip.Prefix) bool { return prefixWithin(p, s) }) {
				return fmt.Sprintf("prefix %v outside subnet %v", p, prefixesString(e.SubnetIPv6))
			}
		}
	}
	return ""
}

// addrLines renders addresses as IMDS lists them, for WaitValue.
func addrLines(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, "\n")
}

// markDuplicateDevices makes Pending every Complete ENI whose (card,
// device) another ENI also claims: one of them is stale or not yet
// propagated, and guessing which would give two ENIs one table. An ENI
// without addresses (NoAddresses, e.g. EFA-only) holds its slot too: an
// ENA ENI whose device-number still reads the EFA's 0 on the same card
// must not take the EFA's table. It stays as it is itself.
func markDuplicateDevices(enis []ENI) {
	type slot struct{ card, dev int }
	owners := map[slot][]int{}
	for i := range enis {
		if e := &enis[i]; e.State == Complete || e.State == Pending && e.NoAddresses {
			s := slot{e.NetworkCard, e.DeviceNumber}
			owners[s] = append(owners[s], i)
		}
	}
	for s, idx := range owners {
		if len(idx) < 2 {
			continue
		}
		for _, i := range idx {
			if enis[i].State != Complete {
				continue
			}
			var others []string
			for _, j := range idx {
				if j != i {
					others = append(others, enis[j].MAC)
				}
			}
			enis[i].State = Pending
			enis[i].Reason = fmt.Sprintf("device-number %d on network-card %d also reported for %s", s.dev, s.card, strings.Join(others, ","))
			// Either ENI's device-number may be the one that changes.
			enis[i].wait("", "", false)
		}
	}
}

// prefixWithin reports whether p lies entirely inside outer.
func prefixWithin(p, outer netip.Prefix) bool {
	return p.Bits() >= outer.Bits() && outer.Contains(p.Addr())
}

func prefixesString(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
