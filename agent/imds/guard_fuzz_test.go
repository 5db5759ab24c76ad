package imds

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func FuzzCheckToken(f *testing.F) {
	for _, s := range []string{
		"AQAEAOE3cR5vF8Ks1W3fXJ8y4zgZ8bJ0uX7Vh1Q2b3c4d5e6f7g8h9==", "", " ", "tok en", "tok\r\nX-Evil: 1",
		strings.Repeat("A", MaxTokenBytes), strings.Repeat("A", MaxTokenBytes+1), "\x00", "é", "\x7f",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := checkToken(b)
		printable := len(b) > 0 && len(b) <= MaxTokenBytes && !slices.ContainsFunc(b, func(c byte) bool { return c <= ' ' || c >= 0x7f })
		if (err == nil) != printable {
			t.Fatalf("%q: err %v, want accepted=%v", b, err, printable)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Fatalf("multi-line reason %q", err)
		}
	})
}

var guardSeeds = []string{
	"100.64.2.0/24", "0.0.0.0/0", "100.64.2.11/32", "100.64.0.0/16", "100.64.0.0/15", "100.64.2.0/28",
	"127.0.0.0/16", "169.254.169.0/24", "224.0.0.0/24", "0.0.0.0/16", "100.64.2.32/28\n100.64.2.48/28",
	"2001:db8:0:2::/64", "::/0", "2001:db8::/44", "2001:db8::/40", "2001:db8:0:2::/80", "fd00:ec2::/64",
	"ff02::/64", "::1/128", "2001:db8:0:2:1::/80", "2001:db8:67f:f201:0:0:0:0/64",
}

// FuzzPrefixGuards: whatever parsePrefixList accepts, the subnet and
// delegated-prefix guards accept exactly the plausible ones.
func FuzzPrefixGuards(f *testing.F) {
	for _, s := range guardSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, fam := range []family{ipv4, ipv6} {
			ps, err := parsePrefixList(body, fam)
			if err != nil {
				continue
			}
			minB, maxB, deleg := MinSubnetIPv4Bits, MaxSubnetIPv4Bits, DelegatedIPv4Bits
			if fam == ipv6 {
				minB, maxB, deleg = MinSubnetIPv6Bits, MaxSubnetIPv6Bits, DelegatedIPv6Bits
			}
			for _, p := range ps {
				routable := p.Bits() > 0 && !p.Addr().IsUnspecified() && !p.Addr().IsLoopback() && !p.Addr().IsMulticast() &&
					!slices.ContainsFunc(imdsAddrs, p.Contains)
				why := checkSubnet(p, minB, maxB)
				if ok := routable && p.Bits() >= minB && p.Bits() <= maxB; (why == "") != ok {
					t.Fatalf("subnet %v: %q, want accepted=%v", p, why, ok)
				}
				why = checkDelegated(p, deleg)
				if ok := routable && p.Bits() == deleg; (why == "") != ok {
					t.Fatalf("delegated %v: %q, want accepted=%v", p, why, ok)
				}
				if strings.Contains(why, "\n") {
					t.Fatalf("multi-line reason %q", why)
				}
			}
		}
	})
}

// FuzzSharedAddresses checks the sorted sweep of markSharedAddresses
// against the obvious pairwise comparison: afterwards no two ENIs still
// Complete list overlapping items, a primary is never made Invalid, and
// an ENI is made Invalid only for a real overlap.
func FuzzSharedAddresses(f *testing.F) {
	f.Add("100.64.1.10", "100.64.1.10\n100.64.1.20", "100.64.3.0/28", "100.64.3.5")
	f.Add("2001:db8::1", "2001:db8::/80", "2001:db8::2", "100.64.1.1")
	f.Add("100.64.1.0/28", "100.64.1.0/24", "100.64.0.0/16", "100.64.2.0/28")
	f.Fuzz(func(t *testing.T, a, b, c, d string) {
		var enis []ENI
		for i, body := range []string{a, b, c, d} {
			e := ENI{MAC: string(rune('a' + i)), Primary: i == 0}
			for _, l := range lines(body) {
				if p, err := netip.ParsePrefix(l); err == nil {
					if p.Addr().Is4() {
						e.IPv4Prefixes = append(e.IPv4Prefixes, p.Masked())
					} else if p.Addr().Zone() == "" {
						e.IPv6Prefixes = append(e.IPv6Prefixes, p.Masked())
					}
				} else if ad, err := netip.ParseAddr(l); err == nil && ad.Zone() == "" {
					if ad.Is4() {
						e.IPv4 = append(e.IPv4, ad)
					} else {
						e.IPv6 = append(e.IPv6, ad)
					}
				}
			}
			enis = append(enis, e)
		}
		overlap := func(i, j int) bool {
			for _, p := range ownedItems(&enis[i]) {
				for _, q := range ownedItems(&enis[j]) {
					if p.Overlaps(q) {
						return true
					}
				}
			}
			return false
		}
		markSharedAddresses(enis)
		if enis[0].State != Complete {
			t.Fatalf("primary made %v: %s", enis[0].State, enis[0].Reason)
		}
		for i := range enis {
			hit := false
			for j := range enis {
				if i != j && overlap(i, j) {
					hit = true
					if !enis[i].Primary && enis[i].State == Complete {
						t.Fatalf("ENI %s overlaps %s but stayed Complete", enis[i].MAC, enis[j].MAC)
					}
				}
			}
			if !hit && enis[i].State != Complete {
				t.Fatalf("ENI %s made %v without an overlap: %s", enis[i].MAC, enis[i].State, enis[i].Reason)
			}
		}
	})
}
