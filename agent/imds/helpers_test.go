package imds

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
)

const (
	primaryMAC = "02:00:00:00:00:01"
	macsBase   = "/latest/meta-data/network/interfaces/macs/"
)

// startFake serves s on loopback for the test.
func startFake(t *testing.T, s *fakeimds.Server) string {
	t.Helper()
	ep, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("start fake IMDS: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return ep
}

// serveWrapped serves s behind wrap (to observe or alter requests).
func serveWrapped(t *testing.T, s *fakeimds.Server, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(wrap(s.Handler()))
	t.Cleanup(func() {
		_ = s.Close() // unblocks hung handlers first
		ts.Close()
	})
	return ts.URL
}

// fastOptions: small timeouts and backoff so that failure paths finish
// quickly; the retry logic is the same as with the defaults.
func fastOptions(ep string) Options {
	return Options{
		Endpoint:       ep,
		Version:        "9.9.9-test",
		Attempts:       3,
		RequestTimeout: time.Second,
		Backoff:        BackoffConfig{Initial: time.Millisecond, Max: 5 * time.Millisecond},
	}
}

func newClient(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// instance returns a fake with a primary ENI (device 0) and n secondary
// ENIs (device 1..n), all Complete-able.
func instance(n int) *fakeimds.Server {
	s := fakeimds.New()
	s.AttachENI(fakeimds.ENI{
		MAC: primaryMAC, InterfaceID: "eni-0a0000000000000001", DeviceNumber: 0,
		SubnetIPv4: "100.64.1.0/24", VPCIPv4: []string{"100.64.0.0/16"},
		SubnetIPv6: []string{"2001:db8:0:1::/64"}, VPCIPv6: []string{"2001:db8::/56"},
		IPv4: []string{"100.64.1.10", "100.64.1.11"}, IPv6: []string{"2001:db8:0:1::10"},
		PublicIPv4: []string{"100.100.0.1"},
	})
	s.SetPrimaryMAC(primaryMAC)
	for i := 1; i <= n; i++ {
		s.AttachENI(secondary(i))
	}
	return s
}

func secondaryMAC(i int) string { return fmt.Sprintf("02:00:00:00:01:%02x", i) }

func secondary(i int) fakeimds.ENI {
	return fakeimds.ENI{
		MAC: secondaryMAC(i), InterfaceID: fmt.Sprintf("eni-0b%016x", i), DeviceNumber: i,
		SubnetIPv4: "100.64.2.0/24", VPCIPv4: []string{"100.64.0.0/16"},
		IPv4: []string{fmt.Sprintf("100.64.2.%d", 10+i)},
	}
}

func mustSnapshot(t *testing.T, c *Client) *Snapshot {
	t.Helper()
	s, err := c.Snapshot(ctxT(t))
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return s
}

func mustENI(t *testing.T, s *Snapshot, mac string) *ENI {
	t.Helper()
	e := s.ENI(mac)
	if e == nil {
		t.Fatalf("no ENI %s in snapshot (%d ENIs)", mac, len(s.ENIs))
	}
	return e
}

func wantState(t *testing.T, e *ENI, want ENIState, reasonHas string) {
	t.Helper()
	if e.State != want {
		t.Fatalf("ENI %s: state %v (%q), want %v", e.MAC, e.State, e.Reason, want)
	}
	if reasonHas != "" && !strings.Contains(e.Reason, reasonHas) {
		t.Fatalf("ENI %s: reason %q does not mention %q", e.MAC, e.Reason, reasonHas)
	}
	if want != Complete && e.Reason == "" {
		t.Fatalf("ENI %s: state %v without a reason", e.MAC, e.State)
	}
}

func addrs(ss ...string) []netip.Addr {
	out := []netip.Addr{}
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	out := []netip.Prefix{}
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func equalAddrs(a, b []netip.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func equalPrefixes(a, b []netip.Prefix) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
