package imds

import (
	"context"
	"net/netip"
)

// readENI reads one ENI. cached, when not nil, supplies the fixed keys.
func (p *pass) readENI(mac string, primary bool, cached *fixedKeys) eniResult {
	e := ENI{MAC: mac, Primary: primary}
	r := eniReader{p: p, e: &e, base: macsPath + mac + "/"}

	fk := cached
	if fk == nil {
		fk = r.readFixed()
	}
	if fk != nil {
		r.fill(fk)
	}
	r.readChanging()
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

// readChanging reads the four keys that change while an ENI is attached
// (the only ones a quiet refresh reads).
func (r *eniReader) readChanging() {
	e := r.e
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

// set moves the ENI to a worse state (Complete < Pending < Invalid,
// Unknown); the first Pending reason, and the key it waits on, stay.
func (r *eniReader) set(s ENIState, reason string) {
	switch {
	case r.e.State == Complete, r.e.State == Pending && s != Pending:
		r.e.State, r.e.Reason = s, reason
		r.e.wait("", "", false)
	}
}

// pending makes the ENI Pending, waiting on key (404).
func (r *eniReader) pending(reason, key string) {
	if r.e.State == Complete {
		r.set(Pending, reason)
		r.e.wait(key, "", key != "")
	}
}

func (r *eniReader) stopped() bool {
	if r.gone || r.e.State == Unknown || r.e.State == Invalid {
		return true
	}
	if b := r.p.brokenReason(); b != "" {
		r.set(Unknown, b)
		return true
	}
	if err := r.p.ctx.Err(); err != nil {
		r.set(Unknown, context.Cause(r.p.ctx).Error())
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
	res := r.p.c.get(r.p.ctx, r.base+key, parse)
	r.p.note(res)
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
			r.pending(name+" not found (not yet propagated, or detaching)", key)
		}
	case outInvalid:
		r.set(Invalid, res.reason)
	default:
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
	r.p.note(res)
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
