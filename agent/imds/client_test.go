package imds

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
)

func TestSnapshotBasic(t *testing.T) {
	s := instance(2)
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	if snap.PrimaryMAC != primaryMAC {
		t.Fatalf("PrimaryMAC %q", snap.PrimaryMAC)
	}
	if len(snap.ENIs) != 3 {
		t.Fatalf("%d ENIs, want 3", len(snap.ENIs))
	}
	for i := 1; i < len(snap.ENIs); i++ {
		if snap.ENIs[i-1].MAC >= snap.ENIs[i].MAC {
			t.Fatalf("ENIs not sorted by MAC: %s before %s", snap.ENIs[i-1].MAC, snap.ENIs[i].MAC)
		}
	}
	p := mustENI(t, snap, primaryMAC)
	wantState(t, p, Complete, "")
	if !p.Primary || p.InterfaceID != "eni-0a0000000000000001" || p.DeviceNumber != 0 {
		t.Fatalf("primary: %+v", p)
	}
	if !equalAddrs(p.IPv4, addrs("100.64.1.10", "100.64.1.11")) || !equalAddrs(p.IPv6, addrs("2001:db8:0:1::10")) {
		t.Fatalf("primary addresses: %v %v", p.IPv4, p.IPv6)
	}
	if p.SubnetIPv4 != netip.MustParsePrefix("100.64.1.0/24") || !equalPrefixes(p.SubnetIPv6, prefixes("2001:db8:0:1::/64")) ||
		!equalPrefixes(p.VPCIPv4, prefixes("100.64.0.0/16")) || !equalPrefixes(p.VPCIPv6, prefixes("2001:db8::/56")) {
		t.Fatalf("primary subnets: %+v", p)
	}
	if !p.StatusRead || !equalAddrs(p.PublicIPv4, addrs("100.100.0.1")) || len(p.SecurityGroups) != 1 {
		t.Fatalf("primary status keys: read=%v public=%v sgs=%v (%s)", p.StatusRead, p.PublicIPv4, p.SecurityGroups, p.StatusError)
	}
	e := mustENI(t, snap, secondaryMAC(2))
	wantState(t, e, Complete, "")
	if e.Primary || e.DeviceNumber != 2 || e.HasNetworkCard || !equalAddrs(e.IPv4, addrs("100.64.2.12")) || len(e.IPv6) != 0 {
		t.Fatalf("secondary: %+v", e)
	}
}

func TestDeviceNumberZeroBeforePropagationIsPending(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	s.SetPropagation(time.Hour) // device-number reads 0 for the window
	s.AttachENI(secondary(2))
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Pending, "device-number 0")
	// The primary reads 0 too, legitimately; the settled secondary is fine.
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Complete, "")

	s.FinishPropagation()
	snap = mustSnapshot(t, c)
	e := mustENI(t, snap, secondaryMAC(2))
	wantState(t, e, Complete, "")
	if e.DeviceNumber != 2 {
		t.Fatalf("device-number %d after propagation, want 2 (a pending read must not be cached)", e.DeviceNumber)
	}
}

func TestPendingENIBecomesCompleteWithBackoff(t *testing.T) {
	s := instance(1)
	o := fastOptions(startFake(t, s))
	o.Backoff = BackoffConfig{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	c := newClient(t, o)
	mustSnapshot(t, c) // warm the cache: the settled ENIs are not re-read
	s.SetPropagation(250*time.Millisecond, "subnet-ipv4-cidr-block")
	s.AttachENI(secondary(2))
	s.ResetCounters()

	snap, err := c.SnapshotSettled(ctxT(t), 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	e := mustENI(t, snap, secondaryMAC(2))
	wantState(t, e, Complete, "")
	if e.DeviceNumber != 2 || e.SubnetIPv4 != netip.MustParsePrefix("100.64.2.0/24") {
		t.Fatalf("settled ENI: device %d subnet %v", e.DeviceNumber, e.SubnetIPv4)
	}
	if n := s.Requests(macsBase); n != 1 {
		t.Fatalf("macs/ listing read %d times, want 1 (only pending ENIs are re-read)", n)
	}
	if n := s.Requests(macsBase + secondaryMAC(1) + "/local-ipv4s"); n != 1 {
		t.Fatalf("settled ENI re-read %d times, want 1", n)
	}
	rounds := s.Requests(macsBase + secondaryMAC(2) + "/device-number")
	if rounds < 2 {
		t.Fatalf("pending ENI read %d times, want re-reads", rounds)
	}
	// 250 ms of propagation with delays of 10, 20, 40, 50, 50… ms: a fixed
	// 10 ms poll would need about 25 rounds.
	if rounds > 15 {
		t.Fatalf("pending ENI read %d times: backoff not growing", rounds)
	}

	// Bounded: an ENI that never settles is returned Pending after maxWait.
	s.SetPropagation(time.Hour)
	s.AttachENI(secondary(3))
	snap, err = c.SnapshotSettled(ctxT(t), 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, mustENI(t, snap, secondaryMAC(3)), Pending, "device-number 0")
	if got := snap.PendingMACs(); len(got) != 1 || got[0] != secondaryMAC(3) {
		t.Fatalf("PendingMACs %v", got)
	}
}

func TestTransientErrorIsNotEmpty(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	path := "network/interfaces/macs/" + secondaryMAC(1) + "/local-ipv4s"

	// First sight, and again once the fixed keys are cached.
	for _, round := range []string{"first sight", "cached"} {
		s.SetFault(path, fakeimds.Fault{Kind: fakeimds.Fault500})
		snap := mustSnapshot(t, c)
		e := mustENI(t, snap, secondaryMAC(1))
		wantState(t, e, Unknown, "500")
		if c.Stats().ServerError == 0 {
			t.Fatalf("%s: 500s not counted: %v", round, c.Stats())
		}
		wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
		s.ClearFaults()
		snap = mustSnapshot(t, c)
		e = mustENI(t, snap, secondaryMAC(1))
		wantState(t, e, Complete, "")
		if !equalAddrs(e.IPv4, addrs("100.64.2.11")) {
			t.Fatalf("%s: IPv4 %v after recovery", round, e.IPv4)
		}
	}
}

func TestPrefix404MeansNone(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	e := mustENI(t, mustSnapshot(t, c), secondaryMAC(1))
	wantState(t, e, Complete, "")
	if e.IPv4Prefixes == nil || len(e.IPv4Prefixes) != 0 || e.IPv6Prefixes == nil || len(e.IPv6Prefixes) != 0 {
		t.Fatalf("prefixes %v %v, want empty non-nil (404 = none)", e.IPv4Prefixes, e.IPv6Prefixes)
	}
	s.AssignPrefix(secondaryMAC(1), "100.64.2.32/28")
	e = mustENI(t, mustSnapshot(t, c), secondaryMAC(1))
	wantState(t, e, Complete, "")
	if !equalPrefixes(e.IPv4Prefixes, prefixes("100.64.2.32/28")) {
		t.Fatalf("IPv4Prefixes %v", e.IPv4Prefixes)
	}
}

func TestTokenExpiryMidRefresh(t *testing.T) {
	s := instance(2)
	var gets atomic.Int64
	var expireAt atomic.Int64 // expire tokens after this many GETs (0: never)
	ep := serveWrapped(t, s, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				if n := gets.Add(1); n == expireAt.Load() {
					s.ExpireTokens()
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	c := newClient(t, fastOptions(ep))
	mustSnapshot(t, c)
	const put = "PUT /latest/api/token"
	if n := s.Requests(put); n != 1 {
		t.Fatalf("%d token PUTs for the first snapshot, want 1", n)
	}
	mustSnapshot(t, c)
	if n := s.Requests(put); n != 1 {
		t.Fatalf("%d token PUTs after a second snapshot, want 1 (token reused)", n)
	}
	// Tokens vanish after the third GET of the next refresh (the token
	// check runs after the wrapper, so that GET itself gets a 401).
	expireAt.Store(gets.Load() + 3)
	snap := mustSnapshot(t, c)
	for _, e := range snap.ENIs {
		wantState(t, &e, Complete, "")
	}
	if n := s.Requests(put); n != 2 {
		t.Fatalf("%d token PUTs after expiry, want 2 (exactly one new token)", n)
	}
	// Every request that took the old token before the first 401 gets a
	// 401 too; only the first makes the SDK drop its token: one new PUT,
	// not one per 401.
	st := c.Stats()
	if st.Unauthorized < 1 || st.TokenFetches != 2 {
		t.Fatalf("stats %v: want 401s and exactly two token fetches", st)
	}
}

func TestGarbageBodyIsUnknownOrInvalid(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	for _, key := range []string{"local-ipv4s", "device-number", "subnet-ipv4-cidr-block", ""} {
		c.Forget(secondaryMAC(1))
		s.SetFault("network/interfaces/macs/"+secondaryMAC(1)+"/"+key, fakeimds.Fault{Kind: fakeimds.FaultGarbage})
		before := c.Stats().Garbage
		snap := mustSnapshot(t, c)
		e := mustENI(t, snap, secondaryMAC(1))
		if e.State != Unknown && e.State != Invalid {
			t.Fatalf("garbage in %q: ENI %v (%q), want unknown or invalid", key, e.State, e.Reason)
		}
		if c.Stats().Garbage == before {
			t.Fatalf("garbage in %q not counted", key)
		}
		wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
		s.ClearFaults()
	}
	// Garbage for the whole listing: the snapshot is unknown.
	s.SetFault("network/interfaces/macs/", fakeimds.Fault{Kind: fakeimds.FaultGarbage})
	if _, err := c.Snapshot(ctxT(t)); err == nil {
		t.Fatal("garbage macs/ listing gave a snapshot")
	}
}

func TestTruncatedBody(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	s.SetFault("network/interfaces/macs/"+secondaryMAC(1)+"/local-ipv4s", fakeimds.Fault{Kind: fakeimds.FaultTruncated})
	e := mustENI(t, mustSnapshot(t, c), secondaryMAC(1))
	wantState(t, e, Unknown, "local-ipv4s")
	if c.Stats().NetworkError == 0 {
		t.Fatalf("broken-off body not counted as a network error: %v", c.Stats())
	}
}

func TestConnectionReset(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	s.SetFault("network/interfaces/macs/"+secondaryMAC(1)+"/ipv6s", fakeimds.Fault{Kind: fakeimds.FaultReset})
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Unknown, "ipv6s")
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
	// 3 attempts; net/http itself re-sends a GET when a reused
	// keep-alive connection turns out dead, on each idle connection it
	// tries (up to Concurrency+1 kept), then once on a new one.
	if n := s.Requests(macsBase + secondaryMAC(1) + "/ipv6s"); n < 3 || n > 3*(DefaultConcurrency+2) {
		t.Fatalf("reset path tried %d times, want 3 attempts", n)
	}
	s.SetFault("network/interfaces/macs/", fakeimds.Fault{Kind: fakeimds.FaultReset})
	if _, err := c.Snapshot(ctxT(t)); err == nil {
		t.Fatal("reset on the macs/ listing gave a snapshot")
	}
}

func TestThrottled429Retried(t *testing.T) {
	s := instance(1)
	path := macsBase + secondaryMAC(1) + "/local-ipv4s"
	var throttled atomic.Int64
	ep := serveWrapped(t, s, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path && throttled.Add(1) <= 2 {
				http.Error(w, "429 - Too Many Requests", http.StatusTooManyRequests)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	o := fastOptions(ep)
	o.Attempts = 4
	c := newClient(t, o)
	e := mustENI(t, mustSnapshot(t, c), secondaryMAC(1))
	wantState(t, e, Complete, "")
	if !equalAddrs(e.IPv4, addrs("100.64.2.11")) {
		t.Fatalf("IPv4 %v", e.IPv4)
	}
	if st := c.Stats(); st.Throttled != 2 {
		t.Fatalf("stats %v, want 2 throttled", st)
	}
}

func TestIMDSDisabled403(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	s.SetFault("", fakeimds.Fault{Kind: fakeimds.Fault403, Token: true})
	_, err := c.Snapshot(ctxT(t))
	if !errors.Is(err, ErrDisabled) {
		t.Fatalf("err %v, want ErrDisabled", err)
	}
	if n := s.TotalRequests(); n != 1 {
		t.Fatalf("%d requests, want 1: a 403 is not retried", n)
	}
	// 403 on data only (token fine) is the same.
	s.ClearFaults()
	s.SetFault("", fakeimds.Fault{Kind: fakeimds.Fault403})
	c2 := newClient(t, fastOptions(c.Endpoint()))
	if _, err := c2.Snapshot(ctxT(t)); !errors.Is(err, ErrDisabled) {
		t.Fatalf("err %v, want ErrDisabled", err)
	}
}

func TestUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	c := newClient(t, fastOptions("http://"+addr))
	ctx := ctxT(t)
	_, err = c.Snapshot(ctx)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err %v, want ErrUnreachable", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Snapshot did not give up before the test's deadline")
	}
	if st := c.Stats(); st.NetworkError != 3 || st.Requests != 3 {
		t.Fatalf("stats %v: want 3 attempts, all network errors", st)
	}
}

func TestHangBoundedByTimeout(t *testing.T) {
	s := instance(2)
	o := fastOptions(startFake(t, s))
	o.RequestTimeout = 100 * time.Millisecond
	o.Attempts = 2
	c := newClient(t, o)
	mustSnapshot(t, c)
	s.SetFault("network/interfaces/macs/"+secondaryMAC(1)+"/local-ipv4s", fakeimds.Fault{Kind: fakeimds.FaultHang})
	ctx := ctxT(t)
	snap, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("a hanging read was not bounded by RequestTimeout")
	}
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Unknown, "local-ipv4s")
	// One hanging path does not condemn the ENIs read after it.
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Complete, "")

	// Everything hangs: the snapshot fails as unreachable.
	s.SetFault("", fakeimds.Fault{Kind: fakeimds.FaultHang})
	if _, err := c.Snapshot(ctx); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err %v, want ErrUnreachable", err)
	}
}

func TestIMDSVanishesMidSnapshot(t *testing.T) {
	const n = 8
	s := instance(n)
	o := fastOptions(startFake(t, s))
	o.RequestTimeout = 100 * time.Millisecond
	o.Attempts = 2
	c := newClient(t, o)
	mustSnapshot(t, c)
	// Everything under the first secondary onwards hangs.
	for i := 1; i <= n; i++ {
		s.SetFault("network/interfaces/macs/"+secondaryMAC(i)+"/", fakeimds.Fault{Kind: fakeimds.FaultHang})
	}
	snap := mustSnapshot(t, c)
	for i := 1; i <= n; i++ {
		wantState(t, mustENI(t, snap, secondaryMAC(i)), Unknown, "")
	}
	// Two unanswered reads stop the pass and cancel the reads in flight:
	// about one read's attempts per reader (a reader whose read ended
	// first may start one more before the second one ends), not 8 ENIs ×
	// 4 keys × 2 attempts.
	if got, limit := c.Stats().NetworkError, int64(DefaultConcurrency*(o.Attempts+1)); got > limit {
		t.Fatalf("%d unanswered requests (limit %d): the pass kept reading a dead IMDS", got, limit)
	}
}

func TestAddressOutsideSubnetInvalid(t *testing.T) {
	s := instance(0)
	bad4 := secondary(1)
	bad4.IPv4 = []string{"100.64.2.11", "100.64.9.9"}
	bad6 := secondary(2)
	bad6.SubnetIPv6 = []string{"2001:db8:0:2::/64"}
	bad6.IPv6 = []string{"2001:db8:0:3::1"}
	badPrefix := secondary(3)
	badPrefix.IPv4Prefixes = []string{"100.64.3.0/28"}
	s.AttachENI(bad4)
	s.AttachENI(bad6)
	s.AttachENI(badPrefix)
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Invalid, "100.64.9.9")
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Invalid, "2001:db8:0:3::1")
	wantState(t, mustENI(t, snap, secondaryMAC(3)), Invalid, "100.64.3.0/28")
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
}

func TestNonMACListingEntryInvalid(t *testing.T) {
	s := instance(1)
	s.Set("network/interfaces/macs/not-a-mac/device-number", "3")
	s.Set("network/interfaces/macs/02:00:00:00:0A:BC/device-number", "4")
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	if len(snap.ENIs) != 4 {
		t.Fatalf("%d ENIs, want 4", len(snap.ENIs))
	}
	wantState(t, mustENI(t, snap, "not-a-mac"), Invalid, "not a lowercase MAC")
	wantState(t, mustENI(t, snap, "02:00:00:00:0A:BC"), Invalid, "not a lowercase MAC")
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Complete, "")
	if n := s.Requests(macsBase + "not-a-mac/"); n != 0 {
		t.Fatalf("invalid entry's directory read %d times", n)
	}
}

func TestTooManyENIs(t *testing.T) {
	s := fakeimds.New()
	card := func(n int) *int { return &n }
	// 101 ENIs on two cards, so that every (card, device) is legal.
	for i := 0; i <= MaxENIs; i++ {
		e := fakeimds.ENI{
			MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i/256, i%256), InterfaceID: fmt.Sprintf("eni-%017x", i+1),
			DeviceNumber: i % 60, NetworkCard: card(i / 60),
			SubnetIPv4: "100.64.0.0/16", IPv4: []string{fmt.Sprintf("100.64.%d.%d", 10+i/200, 1+i%200)},
		}
		s.AttachENI(e)
	}
	s.SetPrimaryMAC("02:00:00:00:00:00")
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	if len(snap.ENIs) != MaxENIs+1 {
		t.Fatalf("%d ENIs, want %d", len(snap.ENIs), MaxENIs+1)
	}
	for i, e := range snap.ENIs {
		if i < MaxENIs {
			wantState(t, &e, Complete, "")
		} else {
			wantState(t, &e, Invalid, "more than 100 ENIs")
		}
	}
	if n := s.Requests(macsBase + snap.ENIs[MaxENIs].MAC + "/"); n != 0 {
		t.Fatalf("ENI beyond the limit was read (%d requests)", n)
	}
}

func TestBodyOver64KiB(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	s.Set("network/interfaces/macs/"+secondaryMAC(1)+"/ipv6s", strings.Repeat("2001:db8:0:2::1\n", MaxBodyBytes/16+1))
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Invalid, "body over 65536 bytes")
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
	if n := s.Requests(macsBase + secondaryMAC(1) + "/ipv6s"); n != 1 {
		t.Fatalf("oversized key read %d times, want 1 (not retried)", n)
	}
}

func TestQuietRefreshRequestCount(t *testing.T) {
	const n = 3
	s := instance(n)
	c := newClient(t, fastOptions(startFake(t, s)))
	mustSnapshot(t, c)
	s.ResetCounters()
	snap := mustSnapshot(t, c)
	for _, e := range snap.ENIs {
		wantState(t, &e, Complete, "")
	}
	if got, want := s.TotalRequests(), 1+4*(n+1); got != want {
		t.Fatalf("quiet refresh made %d requests, want %d: %v", got, want, s.RequestCounts())
	}
	if s.Requests(macsBase) != 1 {
		t.Fatalf("counts %v", s.RequestCounts())
	}
	for _, mac := range []string{primaryMAC, secondaryMAC(1), secondaryMAC(2), secondaryMAC(3)} {
		for _, k := range []string{"local-ipv4s", "ipv6s", "ipv4-prefix", "ipv6-prefix"} {
			if s.Requests(macsBase+mac+"/"+k) != 1 {
				t.Fatalf("%s/%s not read exactly once: %v", mac, k, s.RequestCounts())
			}
		}
	}
	// Changes to the changing keys are seen.
	s.AssignIPv4(secondaryMAC(2), "100.64.2.99")
	e := mustENI(t, mustSnapshot(t, c), secondaryMAC(2))
	if !equalAddrs(e.IPv4, addrs("100.64.2.12", "100.64.2.99")) {
		t.Fatalf("IPv4 %v after assign", e.IPv4)
	}
}

func TestCacheDroppedOnDetachAndForget(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	mustSnapshot(t, c)
	s.DetachENI(secondaryMAC(1))
	if e := mustSnapshot(t, c).ENI(secondaryMAC(1)); e != nil {
		t.Fatalf("detached ENI still in snapshot: %+v", e)
	}
	moved := secondary(1)
	moved.DeviceNumber = 5
	s.AttachENI(moved)
	if e := mustENI(t, mustSnapshot(t, c), secondaryMAC(1)); e.DeviceNumber != 5 {
		t.Fatalf("re-attached ENI device %d, want 5", e.DeviceNumber)
	}
	// Detach and re-attach between two refreshes: only Forget can tell.
	moved.DeviceNumber = 6
	s.AttachENI(moved)
	if e := mustENI(t, mustSnapshot(t, c), secondaryMAC(1)); e.DeviceNumber != 5 {
		t.Fatalf("cached device %d, want 5 (cached until Forget)", e.DeviceNumber)
	}
	c.Forget(secondaryMAC(1))
	if e := mustENI(t, mustSnapshot(t, c), secondaryMAC(1)); e.DeviceNumber != 6 {
		t.Fatalf("device %d after Forget, want 6", e.DeviceNumber)
	}
}

func TestSnapshotFullBypassesCache(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	mustSnapshot(t, c)
	s.ResetCounters()
	snap, err := c.SnapshotFull(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	e := mustENI(t, snap, primaryMAC)
	if !e.StatusRead || len(e.SecurityGroups) != 1 || !equalAddrs(e.PublicIPv4, addrs("100.100.0.1")) {
		t.Fatalf("status keys: %+v", e)
	}
	for _, k := range []string{"device-number", "interface-id", "security-group-ids", "public-ipv4s"} {
		if s.Requests(macsBase+primaryMAC+"/"+k) != 1 {
			t.Fatalf("%s not re-read by SnapshotFull: %v", k, s.RequestCounts())
		}
	}
	if s.Requests("/latest/meta-data/mac") != 1 {
		t.Fatal("SnapshotFull did not re-read the top-level mac")
	}
}

func TestNetworkCardReadOnlyWhenListed(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	for _, mac := range []string{primaryMAC, secondaryMAC(1)} {
		if n := s.Requests(macsBase + mac + "/network-card"); n != 0 {
			t.Fatalf("network-card read %d times on a single-card instance", n)
		}
		if e := mustENI(t, snap, mac); e.HasNetworkCard || e.NetworkCard != 0 {
			t.Fatalf("%+v", e)
		}
	}

	// Multi-card: every ENI lists the key.
	card := func(n int) *int { return &n }
	m := fakeimds.New()
	m.AttachENI(fakeimds.ENI{MAC: primaryMAC, InterfaceID: "eni-01", NetworkCard: card(0), SubnetIPv4: "100.64.1.0/24", IPv4: []string{"100.64.1.10"}})
	m.SetPrimaryMAC(primaryMAC)
	e1 := secondary(1)
	e1.NetworkCard, e1.DeviceNumber = card(1), 0 // device 0 on card 1: legal
	m.AttachENI(e1)
	m.SetPropagation(time.Hour, "network-card")
	e2 := secondary(2)
	e2.NetworkCard = card(1)
	m.AttachENI(e2)
	m.SetPropagation(0)
	mc := newClient(t, fastOptions(startFake(t, m)))
	snap = mustSnapshot(t, mc)
	e := mustENI(t, snap, secondaryMAC(1))
	wantState(t, e, Complete, "")
	if !e.HasNetworkCard || e.NetworkCard != 1 || e.DeviceNumber != 0 {
		t.Fatalf("card ENI: %+v", e)
	}
	if m.Requests(macsBase+secondaryMAC(1)+"/network-card") != 1 {
		t.Fatal("listed network-card not read")
	}
	// Not (yet) listed while the others have it: pending, not card 0.
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Pending, "")
}

func TestSubnetMissingIsPending(t *testing.T) {
	s := instance(0)
	no4 := secondary(1)
	no4.SubnetIPv4 = ""
	no6 := secondary(2)
	no6.IPv6 = []string{"2001:db8:0:2::5"}
	s.AttachENI(no4)
	s.AttachENI(no6)
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Pending, "subnet-ipv4-cidr-block")
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Pending, "subnet-ipv6-cidr-blocks")

	// The subnet appears (propagated, or an IPv6 CIDR associated later):
	// the pending ENI was not cached, so the next read sees it.
	no6.SubnetIPv6 = []string{"2001:db8:0:2::/64"}
	s.AttachENI(no6)
	wantState(t, mustENI(t, mustSnapshot(t, c), secondaryMAC(2)), Complete, "")
}

func TestIPv6OnlyTree(t *testing.T) {
	s, err := fakeimds.Tree("real03")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	if len(snap.ENIs) != 2 {
		t.Fatalf("%d ENIs", len(snap.ENIs))
	}
	for _, e := range snap.ENIs {
		wantState(t, &e, Complete, "")
		if len(e.IPv4) != 0 || e.SubnetIPv4.IsValid() || len(e.IPv6) != 1 {
			t.Fatalf("IPv6-only ENI: %+v", e)
		}
		// Written uncompressed in the tree; equal to the compressed form.
		if !equalPrefixes(e.SubnetIPv6, prefixes("2001:db8:67f:f201::/64")) {
			t.Fatalf("subnet %v", e.SubnetIPv6)
		}
	}
	// IPv4 link-local on an IPv6-only ENI is set apart, and needs no subnet.
	s.Set("network/interfaces/macs/02:6b:df:a2:4b:2b/local-ipv4s", "169.254.0.1")
	c.Forget("02:6b:df:a2:4b:2b")
	e := mustENI(t, mustSnapshot(t, c), "02:6b:df:a2:4b:2b")
	wantState(t, e, Complete, "")
	if len(e.IPv4) != 0 || !equalAddrs(e.IPv4LinkLocal, addrs("169.254.0.1")) {
		t.Fatalf("IPv4 %v link-local %v", e.IPv4, e.IPv4LinkLocal)
	}
}

func TestRealTrees(t *testing.T) {
	type want struct {
		mac, id  string
		primary  bool
		dev      int
		subnet4  string
		subnet6  []string
		ipv4     []string
		ipv6     []string
		publicV4 []string
	}
	cases := map[string][]want{
		"real01": {
			{mac: "06:17:04:d7:26:08", id: "eni-e44ef49f", dev: 1, subnet4: "100.64.16.0/20", ipv4: []string{"100.64.31.16"}},
			{mac: "06:17:04:d7:26:09", id: "eni-e44ef49e", primary: true, subnet4: "100.64.16.0/20", subnet6: []string{"2001:db8:aeb:b20b::/64"},
				ipv4: []string{"100.64.31.15"}, ipv6: []string{"2001:db8:aeb:b20b:9d87:a4af:5cc9:73dc"}, publicV4: []string{"100.100.77.202"}},
		},
		"real02": {
			{mac: "0a:07:84:3d:6e:38", id: "eni-0d6335689899ce9cc", primary: true, subnet4: "100.64.32.0/20", subnet6: []string{"2001:db8:292:100::/64"},
				ipv4:     []string{"100.64.44.13", "100.64.45.70"},
				ipv6:     []string{"2001:db8:292:100:c187:593c:4349:136", "2001:db8:292:100:f153:12a3:c37c:11f9", "2001:db8:292:100:f152:2222:3333:4444"},
				publicV4: []string{"100.100.219.181"}},
			{mac: "0a:75:69:92:e2:16", id: "eni-043cdce36ded5e79f", dev: 1, subnet4: "100.64.32.0/20", ipv4: []string{"100.64.47.221"}},
		},
		"real03": {
			{mac: "02:6b:df:a2:4b:2b", id: "eni-0669816d0cf606123", dev: 1, subnet6: []string{"2001:db8:67f:f201::/64"}, ipv6: []string{"2001:db8:67f:f201:8d2e:4d1f:9e80:4ab9"}},
			{mac: "02:7c:03:b8:5c:af", id: "eni-0f3cddb84c16e1123", primary: true, subnet6: []string{"2001:db8:67f:f201::/64"}, ipv6: []string{"2001:db8:67f:f201:6613:29a2:dbf7:2f1f"}},
		},
	}
	for name, wants := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := fakeimds.Tree(name)
			if err != nil {
				t.Fatal(err)
			}
			c := newClient(t, fastOptions(startFake(t, s)))
			snap := mustSnapshot(t, c)
			if len(snap.ENIs) != len(wants) {
				t.Fatalf("%d ENIs, want %d", len(snap.ENIs), len(wants))
			}
			for i, w := range wants {
				e := snap.ENIs[i]
				wantState(t, &e, Complete, "")
				var sub4 netip.Prefix
				if w.subnet4 != "" {
					sub4 = netip.MustParsePrefix(w.subnet4)
				}
				if e.MAC != w.mac || e.InterfaceID != w.id || e.Primary != w.primary || e.DeviceNumber != w.dev ||
					e.SubnetIPv4 != sub4 || !equalPrefixes(e.SubnetIPv6, prefixes(w.subnet6...)) ||
					!equalAddrs(e.IPv4, addrs(w.ipv4...)) || !equalAddrs(e.IPv6, addrs(w.ipv6...)) ||
					!equalAddrs(e.PublicIPv4, addrs(w.publicV4...)) || len(e.SecurityGroups) != 1 || len(e.VPCIPv4) != 1 {
					t.Fatalf("ENI %d:\n got %+v\nwant %+v", i, e, w)
				}
			}
		})
	}
}

func TestUserAgent(t *testing.T) {
	s := instance(0)
	var mu sync.Mutex
	agents := map[string]bool{}
	ep := serveWrapped(t, s, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			agents[r.Header.Get("User-Agent")] = true
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	mustSnapshot(t, newClient(t, fastOptions(ep)))
	mu.Lock()
	defer mu.Unlock()
	if len(agents) == 0 {
		t.Fatal("no requests seen")
	}
	for ua := range agents {
		if !strings.Contains(ua, "ec2net/9.9.9-test") {
			t.Fatalf("User-Agent %q does not name ec2net and its version", ua)
		}
	}
}

func TestEndpointFromEnvironment(t *testing.T) {
	s := instance(0)
	ep := startFake(t, s)
	t.Setenv(EnvEndpoint, ep)
	o := fastOptions("")
	c := newClient(t, o)
	if c.Endpoint() != ep {
		t.Fatalf("endpoint %q, want %q from the environment", c.Endpoint(), ep)
	}
	mustSnapshot(t, c)
	// An explicit endpoint wins over the environment.
	o.Endpoint = "http://127.0.0.1:1"
	if c := newClient(t, o); c.Endpoint() != o.Endpoint {
		t.Fatalf("endpoint %q", c.Endpoint())
	}
	t.Setenv(EnvEndpoint, "")
	for mode, want := range map[string]string{"": "http://169.254.169.254", "ipv4": "http://169.254.169.254", "ipv6": "http://[fd00:ec2::254]"} {
		if c := newClient(t, Options{EndpointMode: mode}); c.Endpoint() != want {
			t.Fatalf("mode %q: endpoint %q, want %q", mode, c.Endpoint(), want)
		}
	}
	if _, err := New(Options{EndpointMode: "ipv5"}); err == nil {
		t.Fatal("bad endpoint mode accepted")
	}
	if _, err := New(Options{Endpoint: "169.254.169.254"}); err == nil {
		t.Fatal("endpoint without scheme accepted")
	}
}

func TestNoIMDSv1Fallback(t *testing.T) {
	for _, status := range []int{http.StatusForbidden, http.StatusNotFound, http.StatusMethodNotAllowed} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			s := instance(0)
			var tokenless atomic.Int64
			ep := serveWrapped(t, s, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodPut {
						http.Error(w, "no", status)
						return
					}
					if r.Header.Get(fakeimds.TokenHeader) == "" {
						tokenless.Add(1)
					}
					h.ServeHTTP(w, r)
				})
			})
			c := newClient(t, fastOptions(ep))
			_, err := c.Snapshot(ctxT(t))
			if err == nil {
				t.Fatal("snapshot without a token")
			}
			if n := tokenless.Load(); n != 0 {
				t.Fatalf("%d GETs without a token (IMDSv1 fallback)", n)
			}
			if got := errors.Is(err, ErrDisabled); got != (status == http.StatusForbidden) {
				t.Fatalf("err %v: ErrDisabled=%v for a %d token PUT", err, got, status)
			}
		})
	}
}

func TestConcurrentSnapshots(t *testing.T) {
	s := instance(3)
	c := newClient(t, fastOptions(startFake(t, s)))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			snap, err := c.Snapshot(ctxT(t))
			if err == nil && len(snap.ENIs) != 4 {
				err = fmt.Errorf("%d ENIs", len(snap.ENIs))
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := c.Stats(); st.Requests != st.OK+st.NotFound {
		t.Fatalf("stats do not add up on a healthy IMDS: %v", st)
	}
}
