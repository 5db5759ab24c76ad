package imds

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"
)

// fixedKeys are the keys that do not change while an ENI stays attached.
// Once an ENI has been read Complete they are cached by MAC, so that a
// quiet refresh costs the macs/ listing plus four reads per ENI.
type fixedKeys struct {
	interfaceID    string
	deviceNumber   int
	networkCard    int
	hasNetworkCard bool
	subnet4        netip.Prefix
	subnet6        []netip.Prefix
	vpc4           []netip.Prefix
	vpc6           []netip.Prefix
}

const macsPath = "network/interfaces/macs/"

// pass is one snapshot's worth of reads.
type pass struct {
	c    *Client
	ctx  context.Context
	full bool // SnapshotFull: ignore the cache, read the status-only keys
	// broken is set once IMDS stopped answering altogether during the pass
	// (403, or two reads in a row without any response): the remaining
	// ENIs are marked Unknown without each waiting through its own
	// retries. One unanswered read alone could be a single hanging path.
	broken          string
	unreachableRuns int
}

// eniResult is one ENI as read, before the checks that need the whole
// instance (network-card presence, duplicate device numbers).
type eniResult struct {
	eni    ENI
	fixed  *fixedKeys // all fixed keys known (read now or cached)
	cached bool       // fixed came from the cache
}

// Snapshot does one pass: the macs/ listing and, for each ENI, its
// changing keys (and its fixed keys unless cached from an earlier Complete
// read). It does not wait for pending ENIs. It returns an error only when
// the snapshot as a whole is unknown: the top-level mac or the macs/
// listing could not be read (errors.Is ErrDisabled / ErrUnreachable say why).
func (c *Client) Snapshot(ctx context.Context) (*Snapshot, error) {
	s, _, err := c.snapshot(ctx, false)
	return s, err
}

// SnapshotFull is Snapshot without the cache, also reading the status-only
// keys (security-group-ids, public-ipv4s). For `status`.
func (c *Client) SnapshotFull(ctx context.Context) (*Snapshot, error) {
	s, _, err := c.snapshot(ctx, true)
	return s, err
}

// SnapshotSettled takes a Snapshot, then re-reads only the pending ENIs,
// waiting between rounds with the client's backoff (capped exponential,
// jittered), until none is pending, maxWait has passed or ctx is done. It
// returns the latest snapshot; ENIs still pending are marked Pending.
func (c *Client) SnapshotSettled(ctx context.Context, maxWait time.Duration) (*Snapshot, error) {
	deadline := time.Now().Add(maxWait)
	snap, results, err := c.snapshot(ctx, false)
	if err != nil {
		return nil, err
	}
	bo := NewBackoff(c.opts.Backoff)
	for {
		var pending []int
		for i := range results {
			if snap.ENIs[i].State == Pending {
				pending = append(pending, i)
			}
		}
		if len(pending) == 0 {
			return snap, nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return snap, nil
		}
		d := bo.Next()
		if d > left {
			d = left // one last look at the deadline
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return snap, nil
		case <-t.C:
		}
		p := &pass{c: c, ctx: ctx}
		for _, i := range pending {
			mac := results[i].eni.MAC
			if !IsMAC(mac) {
				continue
			}
			results[i] = p.readENI(mac, results[i].eni.Primary, nil)
		}
		snap = c.finish(results, snap.PrimaryMAC)
	}
}

// Forget drops the cached fixed keys of an ENI. The daemon calls it when a
// link disappears: a re-attached ENI may get a new device-number.
func (c *Client) Forget(mac string) {
	c.mu.Lock()
	delete(c.fixed, mac)
	c.mu.Unlock()
}

func (c *Client) snapshot(ctx context.Context, full bool) (*Snapshot, []eniResult, error) {
	p := &pass{c: c, ctx: ctx, full: full}

	c.mu.Lock()
	primary := c.primaryMAC
	c.mu.Unlock()
	if primary == "" || full {
		var mac string
		r := c.get(ctx, "mac", func(b string) error {
			s := strings.TrimSpace(b)
			if s == "" {
				return errEmpty
			}
			if !IsMAC(s) {
				return fmt.Errorf("%s is not a MAC", quote(s))
			}
			mac = s
			return nil
		})
		if r.out != outValue {
			if r.out == outAbsent {
				r.reason = "mac: 404"
			}
			return nil, nil, r.err("mac")
		}
		primary = mac
		c.mu.Lock()
		c.primaryMAC = mac
		c.mu.Unlock()
	}

	var listing MACListing
	r := c.get(ctx, macsPath, func(b string) (err error) {
		listing, err = parseMACListing(b)
		return err
	})
	if r.out != outValue {
		if r.out == outAbsent {
			r.reason = macsPath + ": 404"
		}
		return nil, nil, r.err(macsPath)
	}

	macs := listing.MACs
	var results []eniResult
	if len(macs) > MaxENIs {
		for _, mac := range macs[MaxENIs:] {
			results = append(results, eniResult{eni: ENI{MAC: mac, Primary: mac == primary, State: Invalid,
				Reason: fmt.Sprintf("more than %d ENIs listed; this one is beyond the limit", MaxENIs)}})
		}
		macs = macs[:MaxENIs]
	}
	for _, raw := range listing.Invalid {
		results = append(results, eniResult{eni: ENI{MAC: raw, State: Invalid,
			Reason: fmt.Sprintf("listing entry %s is not a lowercase MAC", quote(raw))}})
	}

	c.mu.Lock()
	for mac := range c.fixed {
		if !slices.Contains(listing.MACs, mac) {
			delete(c.fixed, mac) // detached: a re-attach starts afresh
		}
	}
	cache := make(map[string]*fixedKeys, len(macs))
	if !full {
		for _, mac := range macs {
			if f := c.fixed[mac]; f != nil {
				cache[mac] = f
			}
		}
	}
	c.mu.Unlock()

	for _, mac := range macs {
		results = append(results, p.readENI(mac, mac == primary, cache[mac]))
	}
	sort.SliceStable(results, func(i, j int) bool { return results[i].eni.MAC < results[j].eni.MAC })
	return c.finish(results, primary), results, nil
}

// readENI reads one ENI. cached, when not nil, supplies the fixed keys.
func (p *pass) readENI(mac string, primary bool, cached *fixedKeys) eniResult {
	e := ENI{MAC: mac, Primary: primary}
	r := eniReader{p: p, e: &e, base: macsPath + mac + "/"}

	fk := cached
	if fk == nil {
		fk = r.readFixed()
	}
	if fk != nil {
		e.InterfaceID = fk.interfaceID
		e.DeviceNumber = fk.deviceNumber
		e.NetworkCard = fk.networkCard
		e.HasNetworkCard = fk.hasNetworkCard
		e.SubnetIPv4 = fk.subnet4
		e.SubnetIPv6 = fk.subnet6
		e.VPCIPv4 = fk.vpc4
		e.VPCIPv6 = fk.vpc6
	}

	e.IPv4, e.IPv6 = []netip.Addr{}, []netip.Addr{}
	e.IPv4Prefixes, e.IPv6Prefixes = []netip.Prefix{}, []netip.Prefix{}
	r.read("local-ipv4s", false, func(b string) error {
		as, err := parseAddrList(b, ipv4)
		if err != nil {
			return err
		}
		// IPv4 link-local (169.254/16) shows on IPv6-only ENIs: not an
		// address of the subnet and not one to configure.
		e.IPv4 = e.IPv4[:0]
		e.IPv4LinkLocal = nil
		for _, a := range as {
			if a.IsLinkLocalUnicast() {
				e.IPv4LinkLocal = append(e.IPv4LinkLocal, a)
			} else {
				e.IPv4 = append(e.IPv4, a)
			}
		}
		return nil
	})
	r.read("ipv6s", false, func(b string) (err error) {
		e.IPv6, err = parseAddrList(b, ipv6)
		return err
	})
	r.read("ipv4-prefix", false, func(b string) (err error) {
		e.IPv4Prefixes, err = parsePrefixList(b, ipv4)
		return err
	})
	r.read("ipv6-prefix", false, func(b string) (err error) {
		e.IPv6Prefixes, err = parsePrefixList(b, ipv6)
		return err
	})

	if cached == nil || p.full {
		r.readStatus("security-group-ids", func(b string) (err error) {
			e.SecurityGroups, err = parseIDList(b, "sg")
			return err
		})
		r.readStatus("public-ipv4s", func(b string) (err error) {
			e.PublicIPv4, err = parseAddrList(b, ipv4)
			return err
		})
		e.StatusRead = true
	}
	if e.State == Unknown || e.State == Invalid {
		fk = nil
	}
	return eniResult{eni: e, fixed: fk, cached: cached != nil}
}

// eniReader reads the keys of one ENI and folds their outcomes into its
// state: Unknown and Invalid stop further reads (the ENI will not be acted
// on anyway), Pending does not (later keys still inform `status`).
type eniReader struct {
	p    *pass
	e    *ENI
	base string
	gone bool // the MAC directory is 404: nothing else to read
}

func (r *eniReader) set(s ENIState, reason string) {
	switch {
	case r.e.State == Complete, r.e.State == Pending && s != Pending:
		r.e.State, r.e.Reason = s, reason
	}
}

func (r *eniReader) stopped() bool {
	if r.gone || r.e.State == Unknown || r.e.State == Invalid {
		return true
	}
	if r.p.broken != "" {
		r.set(Unknown, r.p.broken)
		return true
	}
	return false
}

// read reads key; required keys that are absent make the ENI pending
// (every ENI has them once propagated). It reports whether a value parsed.
func (r *eniReader) read(key string, required bool, parse func(string) error) bool {
	if r.stopped() {
		return false
	}
	path := r.base + key
	res := r.p.c.get(r.p.ctx, path, parse)
	if res.out == outUnknown && res.unreachable {
		r.p.unreachableRuns++
	} else {
		r.p.unreachableRuns = 0
	}
	switch res.out {
	case outValue:
		return true
	case outAbsent:
		if required {
			name := key
			if name == "" {
				name = "MAC directory"
				r.gone = true
			}
			r.set(Pending, name+" not found (not yet propagated, or detaching)")
		}
	case outInvalid:
		r.set(Invalid, res.reason)
	case outDisabled:
		r.p.broken = "IMDS disabled (403)"
		r.set(Unknown, res.reason)
	default:
		if r.p.unreachableRuns >= 2 {
			r.p.broken = "IMDS unreachable: " + res.reason
		}
		r.set(Unknown, res.reason)
	}
	return false
}

// readStatus reads a key shown by `status` only: its failure leaves the
// ENI's state alone and is noted in StatusError.
func (r *eniReader) readStatus(key string, parse func(string) error) {
	if r.stopped() {
		return
	}
	res := r.p.c.get(r.p.ctx, r.base+key, parse)
	switch res.out {
	case outValue, outAbsent:
	default:
		if r.e.StatusError == "" {
			r.e.StatusError = res.reason
		}
	}
}

// readFixed reads the MAC directory listing and the fixed keys. It returns
// nil unless every fixed key was read (value or authoritative 404).
func (r *eniReader) readFixed() *fixedKeys {
	fk := &fixedKeys{}
	var listed map[string]bool
	if !r.read("", true, func(b string) error {
		entries, err := parseListing(b)
		if err != nil {
			return err
		}
		listed = make(map[string]bool, len(entries))
		for _, e := range entries {
			listed[e.Name] = true
		}
		return nil
	}) {
		return nil
	}
	// network-card is read only when listed: on single-card types it is
	// absent by design, and its 404 would be indistinguishable from "not
	// yet propagated".
	if listed["network-card"] {
		fk.hasNetworkCard = r.read("network-card", true, func(b string) (err error) {
			fk.networkCard, err = parseNetworkCard(b)
			return err
		})
	}
	r.read("device-number", true, func(b string) (err error) {
		fk.deviceNumber, err = parseDeviceNumber(b)
		return err
	})
	r.read("interface-id", true, func(b string) (err error) {
		fk.interfaceID, err = parseInterfaceID(b)
		return err
	})
	r.read("subnet-ipv4-cidr-block", false, func(b string) (err error) {
		fk.subnet4, err = parseSinglePrefix(b, ipv4)
		return err
	})
	fk.subnet6, fk.vpc4, fk.vpc6 = []netip.Prefix{}, []netip.Prefix{}, []netip.Prefix{}
	r.read("subnet-ipv6-cidr-blocks", false, func(b string) (err error) {
		fk.subnet6, err = parsePrefixList(b, ipv6)
		return err
	})
	r.read("vpc-ipv4-cidr-blocks", false, func(b string) (err error) {
		fk.vpc4, err = parsePrefixList(b, ipv4)
		return err
	})
	r.read("vpc-ipv6-cidr-blocks", false, func(b string) (err error) {
		fk.vpc6, err = parsePrefixList(b, ipv6)
		return err
	})
	if r.e.State != Complete {
		// Unknown, Invalid or Pending (a required key missing): fill what
		// was read for `status`, but do not let it be cached.
		r.fill(fk)
		return nil
	}
	return fk
}

func (r *eniReader) fill(fk *fixedKeys) {
	e := r.e
	e.InterfaceID, e.DeviceNumber, e.NetworkCard, e.HasNetworkCard = fk.interfaceID, fk.deviceNumber, fk.networkCard, fk.hasNetworkCard
	e.SubnetIPv4, e.SubnetIPv6, e.VPCIPv4, e.VPCIPv6 = fk.subnet4, fk.subnet6, fk.vpc4, fk.vpc6
}

// finish applies the checks that need the whole instance, updates the
// cache and assembles the snapshot. results must be sorted by MAC.
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
		if e.State == Complete {
			evaluate(&e, anyCard)
		}
		snap.ENIs[i] = e
	}
	markDuplicateDevices(snap.ENIs)

	c.mu.Lock()
	for i, r := range results {
		switch snap.ENIs[i].State {
		case Complete:
			if r.fixed != nil {
				c.fixed[r.eni.MAC] = r.fixed
			}
		case Pending, Invalid:
			// Re-read the fixed keys next time: what made it pending or
			// invalid may be a fixed key that has changed since (a subnet
			// given an IPv6 CIDR, a re-attach).
			delete(c.fixed, r.eni.MAC)
		}
	}
	c.mu.Unlock()
	return snap
}

// evaluate validates an ENI whose every read succeeded and decides
// whether it is Complete, Pending or Invalid.
func evaluate(e *ENI, anyCard bool) {
	if n := len(e.IPv4) + len(e.IPv4LinkLocal) + len(e.IPv6); n > MaxAddresses {
		e.State, e.Reason = Invalid, fmt.Sprintf("%d addresses (limit %d)", n, MaxAddresses)
		return
	}
	if e.SubnetIPv4.IsValid() {
		for _, a := range e.IPv4 {
			if !e.SubnetIPv4.Contains(a) {
				e.State, e.Reason = Invalid, fmt.Sprintf("address %v outside subnet %v", a, e.SubnetIPv4)
				return
			}
		}
		for _, p := range e.IPv4Prefixes {
			if !prefixWithin(p, e.SubnetIPv4) {
				e.State, e.Reason = Invalid, fmt.Sprintf("prefix %v outside subnet %v", p, e.SubnetIPv4)
				return
			}
		}
	}
	if len(e.SubnetIPv6) > 0 {
		for _, a := range e.IPv6 {
			if !slices.ContainsFunc(e.SubnetIPv6, func(s netip.Prefix) bool { return s.Contains(a) }) {
				e.State, e.Reason = Invalid, fmt.Sprintf("address %v outside subnet %v", a, prefixesString(e.SubnetIPv6))
				return
			}
		}
		for _, p := range e.IPv6Prefixes {
			if !slices.ContainsFunc(e.SubnetIPv6, func(s netip.Prefix) bool { return prefixWithin(p, s) }) {
				e.State, e.Reason = Invalid, fmt.Sprintf("prefix %v outside subnet %v", p, prefixesString(e.SubnetIPv6))
				return
			}
		}
	}
	switch {
	case !e.Primary && e.DeviceNumber == 0 && e.NetworkCard == 0:
		e.State, e.Reason = Pending, "device-number 0 on a secondary ENI (not yet propagated)"
	case !e.HasNetworkCard && anyCard:
		e.State, e.Reason = Pending, "no network-card while other ENIs have one (not yet propagated)"
	case (len(e.IPv4) > 0 || len(e.IPv4Prefixes) > 0) && !e.SubnetIPv4.IsValid():
		e.State, e.Reason = Pending, "IPv4 addresses but no subnet-ipv4-cidr-block (not yet propagated)"
	case (len(e.IPv6) > 0 || len(e.IPv6Prefixes) > 0) && len(e.SubnetIPv6) == 0:
		e.State, e.Reason = Pending, "IPv6 addresses but no subnet-ipv6-cidr-blocks (not yet propagated)"
	case e.SubnetIPv4.IsValid() && len(e.IPv4) == 0:
		// An ENI in a subnet with an IPv4 CIDR always has a primary
		// private IPv4; a 404 on local-ipv4s then is lag (or a fault),
		// never evidence that its IPv4 addresses are gone.
		e.State, e.Reason = Pending, "subnet has an IPv4 CIDR but local-ipv4s lists nothing (not yet propagated)"
	case len(e.IPv4) == 0 && len(e.IPv6) == 0:
		// Every ENI has a primary address; none listed means IMDS has
		// not caught up (or an EFA-only ENI, which has nothing to set up).
		e.State, e.Reason = Pending, "no addresses listed (not yet propagated)"
	}
}

// markDuplicateDevices makes Pending every Complete ENI whose (card,
// device) another Complete ENI also claims: one of them is stale or not
// yet propagated, and guessing which would give two ENIs one table.
func markDuplicateDevices(enis []ENI) {
	type slot struct{ card, dev int }
	owners := map[slot][]int{}
	for i := range enis {
		if enis[i].State == Complete {
			s := slot{enis[i].NetworkCard, enis[i].DeviceNumber}
			owners[s] = append(owners[s], i)
		}
	}
	for s, idx := range owners {
		if len(idx) < 2 {
			continue
		}
		for _, i := range idx {
			var others []string
			for _, j := range idx {
				if j != i {
					others = append(others, enis[j].MAC)
				}
			}
			enis[i].State = Pending
			enis[i].Reason = fmt.Sprintf("device-number %d on network-card %d also reported for %s", s.dev, s.card, strings.Join(others, ","))
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
