package imds

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
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

// pass is one snapshot's worth of reads, bounded by Options.PassTimeout.
// Its ENIs are read concurrently (Options.Concurrency at a time).
type pass struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	full   bool // SnapshotFull: ignore the cache, read the status-only keys

	mu sync.Mutex
	// broken is set once IMDS stopped answering altogether during the pass
	// (403, or two reads in a row without any response): the remaining
	// reads are cancelled and their ENIs marked Unknown without each
	// waiting through its own retries. One unanswered read alone could be
	// a single hanging path.
	broken          string
	unreachableRuns int
}

// errPassDeadline is the cause of a pass context that ran out of time.
type errPassDeadline time.Duration

func (e errPassDeadline) Error() string {
	return fmt.Sprintf("the IMDS pass's %v deadline passed before this was read", time.Duration(e))
}

func (c *Client) newPass(ctx context.Context, full bool) *pass {
	d := c.opts.PassTimeout
	ctx, cancelT := context.WithTimeoutCause(ctx, d, errPassDeadline(d))
	ctx, cancel := context.WithCancel(ctx)
	return &pass{c: c, ctx: ctx, full: full, cancel: func() { cancel(); cancelT() }}
}

// note folds one read's result into the pass's view of IMDS.
func (p *pass) note(res readResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case res.out == outDisabled:
		if p.broken == "" {
			p.broken = "IMDS disabled (403)"
			p.cancel()
		}
	case res.out == outUnknown && res.unreachable:
		p.unreachableRuns++
		if p.unreachableRuns >= 2 && p.broken == "" {
			p.broken = "IMDS unreachable: " + res.reason
			p.cancel()
		}
	default:
		p.unreachableRuns = 0
	}
}

func (p *pass) brokenReason() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.broken
}

// each runs fn(0..n-1) with at most Options.Concurrency running at once.
func (p *pass) each(n int, fn func(i int)) {
	sem := make(chan struct{}, p.c.opts.Concurrency)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// eniResult is one ENI as read, before the checks that need the whole
// instance (network-card presence, duplicate device numbers, shared
// addresses).
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
			if snap.ENIs[i].State == Pending && IsMAC(results[i].eni.MAC) {
				pending = append(pending, i)
			}
		}
		left := time.Until(deadline)
		if len(pending) == 0 || left <= 0 {
			return snap, nil
		}
		if !sleepCtx(ctx, min(bo.Next(), left)) { // one last look at the deadline
			return snap, nil
		}
		p := c.newPass(ctx, false)
		p.each(len(pending), func(k int) {
			i := pending[k]
			results[i] = p.readENI(results[i].eni.MAC, results[i].eni.Primary, nil)
		})
		p.cancel()
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
	p := c.newPass(ctx, full)
	defer p.cancel()
	primary, listing, err := p.readTop(full)
	if err != nil {
		return nil, nil, err
	}
	results, macs := listingResults(listing, primary)
	cache := c.pruneCache(listing, macs, full)
	read := make([]eniResult, len(macs))
	p.each(len(macs), func(i int) {
		read[i] = p.readENI(macs[i], macs[i] == primary, cache[macs[i]])
	})
	results = append(results, read...)
	sort.SliceStable(results, func(i, j int) bool { return results[i].eni.MAC < results[j].eni.MAC })
	return c.finish(results, primary), results, nil
}

// readTop reads the top-level mac (once per Client, or again when full)
// and the macs/ listing. An error means the pass as a whole is unknown.
func (p *pass) readTop(full bool) (string, MACListing, error) {
	c := p.c
	c.mu.Lock()
	primary := c.primaryMAC
	c.mu.Unlock()
	if primary == "" || full {
		var mac string
		r := c.get(p.ctx, "mac", func(b string) error {
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
			return "", MACListing{}, r.err("mac")
		}
		primary = mac
		c.mu.Lock()
		c.primaryMAC = mac
		c.mu.Unlock()
	}
	var listing MACListing
	r := c.get(p.ctx, macsPath, func(b string) (err error) {
		listing, err = parseMACListing(b)
		return err
	})
	if r.out != outValue {
		if r.out == outAbsent {
			r.reason = macsPath + ": 404"
		}
		return "", MACListing{}, r.err(macsPath)
	}
	return primary, listing, nil
}

// listingResults turns the listing's invalid entries, and the ENIs beyond
// MaxENIs, into Invalid results, and returns the MACs to read.
func listingResults(listing MACListing, primary string) ([]eniResult, []string) {
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
	return results, macs
}

// pruneCache drops the cache entries of MACs no longer listed (a re-attach
// starts afresh) and returns the entries for macs (none when full).
func (c *Client) pruneCache(listing MACListing, macs []string, full bool) map[string]*fixedKeys {
	c.mu.Lock()
	defer c.mu.Unlock()
	for mac := range c.fixed {
		if !slices.Contains(listing.MACs, mac) {
			delete(c.fixed, mac)
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
	return cache
}
