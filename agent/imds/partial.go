package imds

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// ReadENIs re-reads only the ENIs named by macs and merges them into a
// copy of prev. It reads the macs/ listing too (1 request), so the result
// always matches what IMDS lists now:
//   - a named MAC that is listed is read (fixed keys from the cache when
//     the ENI was last Complete, as Snapshot does);
//   - a listed MAC that is not named keeps its ENI from prev;
//   - a listed MAC that is neither named nor in prev (attached meanwhile)
//     is Unknown ("listed but not read in this partial read"): present, so
//     nobody takes its absence for a detach, and not acted on;
//   - a MAC no longer listed drops out, named or not, as in Snapshot.
//
// The checks that need the whole instance (network-card presence,
// duplicate (card, device), shared addresses) run again over the merged
// set, so a newly read ENI can change the state of one kept from prev and
// the other way round. prev must be a snapshot returned by this package
// (its ENIs remember the state their own reads gave them); nil prev is an
// empty one. The cost is 1 + what the named ENIs cost: 4 requests each
// once their fixed keys are cached, so a daemon that names only the ENIs
// that have a link keeps a quiet refresh at 1 + 4 per linked ENI.
// Errors are those of Snapshot (listing or top-level mac unreadable).
func (c *Client) ReadENIs(ctx context.Context, prev *Snapshot, macs []string) (*Snapshot, error) {
	p := c.newPass(ctx, false)
	defer p.cancel()
	if prev != nil && prev.PrimaryMAC != "" {
		c.mu.Lock()
		if c.primaryMAC == "" {
			c.primaryMAC = prev.PrimaryMAC
		}
		c.mu.Unlock()
	}
	primary, listing, err := p.readTop(false)
	if err != nil {
		return nil, err
	}
	results, listed := listingResults(listing, primary)
	named := map[string]bool{}
	for _, m := range macs {
		named[m] = true
	}
	var toRead []string
	for _, mac := range listed {
		switch old := prev.ENI(mac); {
		case named[mac]:
			toRead = append(toRead, mac)
		case old != nil:
			results = append(results, eniResult{eni: cloneENI(*old), cached: true})
		default:
			results = append(results, eniResult{eni: ENI{MAC: mac, Primary: mac == primary, State: Unknown,
				Reason: "listed but not read in this partial read"}})
		}
	}
	cache := c.pruneCache(listing, toRead, false)
	read := make([]eniResult, len(toRead))
	p.each(len(toRead), func(i int) {
		read[i] = p.readENI(toRead[i], toRead[i] == primary, cache[toRead[i]])
	})
	results = append(results, read...)
	sort.SliceStable(results, func(i, j int) bool { return results[i].eni.MAC < results[j].eni.MAC })
	return c.finish(results, primary), nil
}

// cloneENI copies an ENI deeply enough that the new snapshot shares no
// slice with the old one (consumers append to them).
func cloneENI(e ENI) ENI {
	e.SubnetIPv6, e.VPCIPv4, e.VPCIPv6 = slices.Clone(e.SubnetIPv6), slices.Clone(e.VPCIPv4), slices.Clone(e.VPCIPv6)
	e.IPv4, e.IPv6 = slices.Clone(e.IPv4), slices.Clone(e.IPv6)
	e.IPv4Prefixes, e.IPv6Prefixes = slices.Clone(e.IPv4Prefixes), slices.Clone(e.IPv6Prefixes)
	e.IPv4LinkLocal, e.PublicIPv4 = slices.Clone(e.IPv4LinkLocal), slices.Clone(e.PublicIPv4)
	e.SecurityGroups = slices.Clone(e.SecurityGroups)
	return e
}

// ErrNoWaitKey is returned by Peek for an ENI that is not Pending or has
// no single key to watch (WaitKey ""): re-read it with ReadENIs, with a
// backoff, instead.
var ErrNoWaitKey = errors.New("imds: ENI has no key to peek at")

// Peek reads the one key a Pending ENI waits on (e.WaitKey) in a single
// request over the client's kept-alive connection (no retries, except one
// immediate retry with a fresh token when IMDS rejects the token) and
// reports whether it differs from what made the ENI pending: a value
// where there was a 404, a 404 where there was a value, or another value
// (compared line by line, trimmed). changed == false means the ENI is
// certainly still pending for the same reason; true means ReadENIs
// should read it again (which may find it still pending, for another
// reason). Any answer other than 200 or 404 is an error, and so is a
// first-contact or ctx timeout: the caller keeps polling.
func (c *Client) Peek(ctx context.Context, e *ENI) (changed bool, err error) {
	if e == nil || e.State != Pending || e.WaitKey == "" || !IsMAC(e.MAC) {
		return false, ErrNoWaitKey
	}
	path := macsPath + e.MAC + "/" + e.WaitKey
	var value string
	r := c.getN(ctx, path, 1, func(b string) error {
		value = strings.Join(lines(b), "\n")
		if value == "" {
			return errEmpty
		}
		return nil
	})
	switch r.out {
	case outAbsent:
		return !e.WaitAbsent, nil
	case outValue:
		return e.WaitAbsent || value != e.WaitValue, nil
	case outDisabled:
		return false, fmt.Errorf("%w (reading %s)", ErrDisabled, path)
	}
	return false, r.err(path)
}
