package imds

import (
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Seeds: the shapes imds.md documents and the real trees (imds-trees)
// serve, plus the ways they go wrong.
var (
	listingSeeds = []string{
		"0e:10:00:00:00:01/",
		"06:17:04:d7:26:08/\n06:17:04:d7:26:09/",
		"06:17:04:d7:26:08/\n06:17:04:d7:26:09/\n",
		"device-number\ninterface-id\nipv4-associations/\nipv6s\nlocal-hostname\nlocal-ipv4s\nmac\nnetwork-card\nowner-id\nsecurity-group-ids\nsubnet-ipv4-cidr-block",
		"a/\r\nb\r\n",
		"", "\n\n", "/", "a//", "a b", "a\x00b", "\xff\xfe",
		"02:7C:03:B8:5C:AF/", "not-a-mac/", "02:7c:03:b8:5c:af",
	}
	addrSeeds = []string{
		"100.64.31.15", "100.64.44.13\n100.64.45.70", "100.64.44.13\n100.64.45.70\n",
		"2001:db8:aeb:b20b:9d87:a4af:5cc9:73dc",
		"2001:db8:292:100:c187:593c:4349:136\n2001:db8:292:100:f153:12a3:c37c:11f9\n2001:db8:292:100:f152:2222:3333:4444",
		"169.254.0.1", "::ffff:100.64.1.1", "fe80::1%eth0", "100.064.1.1", "100.64.1.1/32",
		"100.64.1.1\n100.64.1.1", "", " \n ", "<html>", "100.64.",
	}
	prefixSeeds = []string{
		"100.64.16.0/20", "100.64.0.0/16", "2001:db8:aeb:b20b::/64", "2001:db8:aeb:b200::/56",
		"2001:db8:67f:f201:0:0:0:0/64", "2001:db8:67f:f200:0:0:0:0/56",
		"100.64.2.32/28\n100.64.2.48/28", "2001:db8:0:1:1::/80", "100.64.2.33/28",
		"100.64.0.0/33", "2001:db8::/129", "100.64.0.0", "::ffff:100.64.0.0/112", "", "100.64.0.0/16\n100.64.0.0/16",
	}
	numberSeeds = []string{"0", "1", "15", "16", "31", "99", "100", "226", "227", "999", "007", "-1", "+1", "0x1", " 3\n", "", "1e2", "٣", "999999999999999999999"}
	idSeeds     = []string{"eni-e44ef49e", "eni-0f3cddb84c16e1123", "eni-", "ENI-0a", "eni-0A", "eni-0g", "sg-5a61d333", "", " eni-01 \n"}
)

func TestParseListing(t *testing.T) {
	got, err := parseListing("device-number\nipv4-associations/\r\nmac\nmac\n")
	want := []ListingEntry{{"device-number", false}, {"ipv4-associations", true}, {"mac", false}}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := parseListing(" \n"); !errors.Is(err, errEmpty) {
		t.Fatalf("empty listing: %v", err)
	}
	for _, bad := range []string{"/", "a//", "a b", "a\x00", "a/b", "\xff"} {
		if _, err := parseListing(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseListing(strings.Repeat("k\n", maxListingEntries+1)); err == nil {
		// Duplicates are counted before being dropped: the limit is on
		// what IMDS sent.
		t.Error("oversized listing accepted")
	}
}

func TestParseMACListing(t *testing.T) {
	l, err := parseMACListing("06:17:04:d7:26:09/\nnot-a-mac/\n06:17:04:d7:26:08/\n06:17:04:D7:26:0A/\n06:17:04:d7:26:08/")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(l.MACs, []string{"06:17:04:d7:26:08", "06:17:04:d7:26:09"}) {
		t.Fatalf("MACs %v", l.MACs)
	}
	if !slices.Equal(l.Invalid, []string{"06:17:04:D7:26:0A", "not-a-mac"}) {
		t.Fatalf("Invalid %v", l.Invalid)
	}
}

func TestParseNumbers(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "1": 1, "99": 99, " 7\n": 7} {
		if n, err := parseDeviceNumber(in); err != nil || n != want {
			t.Errorf("device-number %q: %d, %v", in, n, err)
		}
	}
	for _, bad := range []string{"100", "007", "-1", "+1", "0x1", "1e2", "٣", "1 2", "999999999999999999999"} {
		if _, err := parseDeviceNumber(bad); err == nil {
			t.Errorf("device-number %q accepted", bad)
		}
	}
	if _, err := parseDeviceNumber(" "); !errors.Is(err, errEmpty) {
		t.Errorf("empty device-number: %v", err)
	}
	// p5.48xlarge has cards 0-31; the bound is the table formula's.
	for _, card := range []int{15, 16, 31, MaxNetworkCard} {
		if n, err := parseNetworkCard(strconv.Itoa(card)); err != nil || n != card {
			t.Errorf("network-card %d: %d %v", card, n, err)
		}
	}
	for _, bad := range []string{strconv.Itoa(MaxNetworkCard + 1), "999", "1000"} {
		_, err := parseNetworkCard(bad)
		if err == nil || !strings.Contains(err.Error(), "10000+100*card+device") || strings.Contains(err.Error(), "\n") {
			t.Errorf("network-card %s: %v, want a one-line refusal naming the formula", bad, err)
		}
	}
	// The largest card's last table stays below the main table's rule.
	if top := 10000 + 100*MaxNetworkCard + MaxDeviceNumber; top >= 32766 || 10000+100*(MaxNetworkCard+1)+MaxDeviceNumber < 32766 {
		t.Errorf("MaxNetworkCard %d is not the largest card below 32766 (top table %d)", MaxNetworkCard, top)
	}
}

func TestParseIDs(t *testing.T) {
	for _, ok := range []string{"eni-e44ef49e", "eni-0f3cddb84c16e1123\n"} {
		if _, err := parseInterfaceID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"eni-", "ENI-0a", "eni-0A", "eni-0g", "sg-0a", "eni-" + strings.Repeat("0", 33)} {
		if _, err := parseInterfaceID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if sgs, err := parseIDList("sg-5a61d333\nsg-0c387755222ba8d2e", "sg"); err != nil || len(sgs) != 2 {
		t.Errorf("sgs %v %v", sgs, err)
	}
}

func TestParseAddrList(t *testing.T) {
	got, err := parseAddrList("100.64.44.13\n100.64.45.70\n100.64.44.13\n", ipv4)
	if err != nil || !equalAddrs(got, addrs("100.64.44.13", "100.64.45.70")) {
		t.Fatalf("got %v %v (order kept, repeats dropped)", got, err)
	}
	if _, err := parseAddrList("", ipv4); !errors.Is(err, errEmpty) {
		t.Fatalf("empty: %v", err)
	}
	for _, c := range []struct {
		in string
		f  family
	}{
		{"2001:db8::1", ipv4}, {"100.64.1.1", ipv6}, {"::ffff:100.64.1.1", ipv6}, {"fe80::1%eth0", ipv6},
		{"100.064.1.1", ipv4}, {"100.64.1.1/32", ipv4}, {"<html>", ipv4}, {"100.64.1.1\n100.64.", ipv4},
	} {
		if _, err := parseAddrList(c.in, c.f); err == nil {
			t.Errorf("%q as %v accepted", c.in, c.f)
		}
	}
	var b strings.Builder
	for i := 0; i <= MaxAddresses; i++ {
		b.WriteString(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}).String() + "\n")
	}
	if _, err := parseAddrList(b.String(), ipv4); err == nil {
		t.Error("more than MaxAddresses accepted")
	}
}

func TestParsePrefixList(t *testing.T) {
	got, err := parsePrefixList("2001:db8:67f:f201:0:0:0:0/64\n2001:db8:67f:f201::/64\n2001:db8:0:1:1:2::/80", ipv6)
	if err != nil || !equalPrefixes(got, prefixes("2001:db8:67f:f201::/64", "2001:db8:0:1:1::/80")) {
		t.Fatalf("got %v %v (uncompressed equals compressed; host bits masked)", got, err)
	}
	for _, c := range []struct {
		in string
		f  family
	}{
		{"100.64.0.0/33", ipv4}, {"2001:db8::/129", ipv6}, {"100.64.0.0", ipv4}, {"::ffff:100.64.0.0/112", ipv6},
		{"100.64.0.0/16", ipv6}, {"2001:db8::/64", ipv4},
	} {
		if _, err := parsePrefixList(c.in, c.f); err == nil {
			t.Errorf("%q as %v accepted", c.in, c.f)
		}
	}
	if _, err := parseSinglePrefix("100.64.0.0/16\n100.65.0.0/16", ipv4); err == nil {
		t.Error("two subnets accepted where one is expected")
	}
}

func TestEvaluate(t *testing.T) {
	base := func() ENI {
		return ENI{MAC: "02:00:00:00:01:01", DeviceNumber: 1, InterfaceID: "eni-01",
			SubnetIPv4: netip.MustParsePrefix("100.64.2.0/24"), SubnetIPv6: prefixes("2001:db8:0:2::/64"),
			IPv4: addrs("100.64.2.10"), IPv6: addrs("2001:db8:0:2::10"),
			IPv4Prefixes: prefixes("100.64.2.32/28"), IPv6Prefixes: prefixes("2001:db8:0:2:1::/80")}
	}
	cases := []struct {
		name    string
		edit    func(*ENI)
		anyCard bool
		want    ENIState
	}{
		{"complete", func(*ENI) {}, false, Complete},
		{"primary device 0", func(e *ENI) { e.Primary, e.DeviceNumber = true, 0 }, false, Complete},
		{"secondary device 0", func(e *ENI) { e.DeviceNumber = 0 }, false, Pending},
		{"secondary device 0 card 1", func(e *ENI) { e.DeviceNumber, e.NetworkCard, e.HasNetworkCard = 0, 1, true }, true, Complete},
		{"card missing on multi-card", func(*ENI) {}, true, Pending},
		{"no IPv4 subnet", func(e *ENI) { e.SubnetIPv4 = netip.Prefix{} }, false, Pending},
		{"no IPv4 subnet, prefix only", func(e *ENI) { e.SubnetIPv4, e.IPv4 = netip.Prefix{}, nil }, false, Pending},
		{"no IPv6 subnet", func(e *ENI) { e.SubnetIPv6 = nil }, false, Pending},
		{"IPv6-only", func(e *ENI) { e.SubnetIPv4, e.IPv4, e.IPv4Prefixes = netip.Prefix{}, nil, nil }, false, Complete},
		{"link-local IPv4 only", func(e *ENI) {
			e.SubnetIPv4, e.IPv4, e.IPv4Prefixes, e.IPv4LinkLocal = netip.Prefix{}, nil, nil, addrs("169.254.0.1")
		}, false, Complete},
		{"no addresses", func(e *ENI) { e.IPv4, e.IPv6 = nil, nil }, false, Pending},
		// A 404 on local-ipv4s in a subnet with an IPv4 CIDR is lag, not
		// "its IPv4 addresses are gone" (which would start their removal).
		{"IPv4 subnet but no IPv4 listed", func(e *ENI) { e.IPv4 = nil }, false, Pending},
		{"IPv4 outside", func(e *ENI) { e.IPv4 = addrs("100.64.2.10", "100.64.3.1") }, false, Invalid},
		{"IPv6 outside", func(e *ENI) { e.IPv6 = addrs("2001:db8:0:3::1") }, false, Invalid},
		{"IPv4 prefix outside", func(e *ENI) { e.IPv4Prefixes = prefixes("100.64.3.0/28") }, false, Invalid},
		{"IPv4 prefix wider than subnet", func(e *ENI) { e.IPv4Prefixes = prefixes("100.64.0.0/16") }, false, Invalid},
		{"IPv6 prefix outside", func(e *ENI) { e.IPv6Prefixes = prefixes("2001:db8:0:3:1::/80") }, false, Invalid},
		{"too many addresses", func(e *ENI) {
			e.IPv6 = nil
			for i := 0; i <= MaxAddresses; i++ {
				e.IPv6 = append(e.IPv6, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 2, 15: byte(i), 14: byte(i >> 8)}))
			}
		}, false, Invalid},
	}
	for _, c := range cases {
		e := base()
		c.edit(&e)
		evaluate(&e, c.anyCard)
		if e.State != c.want || (c.want != Complete && e.Reason == "") {
			t.Errorf("%s: %v (%q), want %v", c.name, e.State, e.Reason, c.want)
		}
	}
}

func TestDuplicateDevicesPending(t *testing.T) {
	enis := []ENI{
		{MAC: "a", DeviceNumber: 1, State: Complete},
		{MAC: "b", DeviceNumber: 1, State: Complete},
		{MAC: "c", DeviceNumber: 1, NetworkCard: 1, State: Complete},
		{MAC: "d", DeviceNumber: 2, State: Complete},
	}
	markDuplicateDevices(enis)
	for i, want := range []ENIState{Pending, Pending, Complete, Complete} {
		if enis[i].State != want {
			t.Errorf("%s: %v (%s), want %v", enis[i].MAC, enis[i].State, enis[i].Reason, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	c := BackoffConfig{Initial: 100, Max: 1000, Jitter: 0.5}
	b := NewBackoff(c)
	bases := []int64{100, 200, 400, 800, 1000, 1000}
	for round := 0; round < 2; round++ {
		for _, base := range bases {
			d := int64(b.Next())
			if d > base || d < base/2 {
				t.Fatalf("delay %d outside [%d, %d]", d, base/2, base)
			}
		}
		b.Reset()
	}
	def := NewBackoff(BackoffConfig{})
	if d := def.Next(); d > 100e6 || d < 80e6 {
		t.Fatalf("default first delay %v, want 80-100ms", d)
	}
}

// Fuzz targets: none may panic; whatever a parser accepts must satisfy the
// invariants the rest of ec2net relies on and survive a round trip.

func FuzzParseListing(f *testing.F) {
	for _, s := range listingSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		es, err := parseListing(body)
		if err != nil {
			return
		}
		if len(es) == 0 || len(es) > maxListingEntries {
			t.Fatalf("%d entries", len(es))
		}
		var b strings.Builder
		seen := map[string]bool{}
		for _, e := range es {
			if e.Name == "" || strings.ContainsAny(e.Name, "/ \t\r\n") || seen[e.Name] {
				t.Fatalf("bad entry %q", e.Name)
			}
			seen[e.Name] = true
			b.WriteString(e.Name)
			if e.Dir {
				b.WriteString("/")
			}
			b.WriteString("\n")
		}
		again, err := parseListing(b.String())
		if err != nil || !slices.Equal(es, again) {
			t.Fatalf("round trip: %v, %v", again, err)
		}
	})
}

func FuzzParseMACListing(f *testing.F) {
	for _, s := range listingSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		l, err := parseMACListing(body)
		if err != nil {
			return
		}
		if !slices.IsSorted(l.MACs) || len(slices.Compact(slices.Clone(l.MACs))) != len(l.MACs) {
			t.Fatalf("MACs not sorted and unique: %v", l.MACs)
		}
		for _, m := range l.MACs {
			if !IsMAC(m) {
				t.Fatalf("accepted %q", m)
			}
		}
		for _, m := range l.Invalid {
			if IsMAC(m) || len(m) > maxReasonInput {
				t.Fatalf("invalid entry %q", m)
			}
		}
	})
}

func fuzzAddrs(t *testing.T, body string, f family) {
	as, err := parseAddrList(body, f)
	if err != nil {
		return
	}
	if len(as) == 0 || len(as) > MaxAddresses {
		t.Fatalf("%d addresses", len(as))
	}
	seen := map[netip.Addr]bool{}
	var b strings.Builder
	for _, a := range as {
		if !f.has(a) || a.Zone() != "" || seen[a] {
			t.Fatalf("accepted %v as %v", a, f)
		}
		seen[a] = true
		b.WriteString(a.String() + "\n")
	}
	again, err := parseAddrList(b.String(), f)
	if err != nil || !equalAddrs(as, again) {
		t.Fatalf("round trip: %v, %v", again, err)
	}
}

func FuzzParseAddrList(f *testing.F) {
	for _, s := range addrSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body string, v6 bool) {
		fam := ipv4
		if v6 {
			fam = ipv6
		}
		fuzzAddrs(t, body, fam)
	})
}

func FuzzParsePrefixList(f *testing.F) {
	for _, s := range prefixSeeds {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, body string, v6 bool) {
		fam := ipv4
		if v6 {
			fam = ipv6
		}
		ps, err := parsePrefixList(body, fam)
		if err != nil {
			return
		}
		if len(ps) == 0 || len(ps) > MaxAddresses {
			t.Fatalf("%d prefixes", len(ps))
		}
		var b strings.Builder
		for _, p := range ps {
			if !p.IsValid() || p != p.Masked() || !fam.has(p.Addr()) {
				t.Fatalf("accepted %v as %v", p, fam)
			}
			b.WriteString(p.String() + "\n")
		}
		again, err := parsePrefixList(b.String(), fam)
		if err != nil || !equalPrefixes(ps, again) {
			t.Fatalf("round trip: %v, %v", again, err)
		}
	})
}

func FuzzParseSinglePrefix(f *testing.F) {
	for _, s := range prefixSeeds {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, body string, v6 bool) {
		fam := ipv4
		if v6 {
			fam = ipv6
		}
		p, err := parseSinglePrefix(body, fam)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || !fam.has(p.Addr()) {
			t.Fatalf("accepted %v", p)
		}
	})
}

func fuzzNumber(f *testing.F, parse func(string) (int, error), max int) {
	for _, s := range numberSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		n, err := parse(body)
		if err != nil {
			return
		}
		if n < 0 || n > max || strconv.Itoa(n) != strings.TrimSpace(body) {
			t.Fatalf("%q parsed as %d", body, n)
		}
	})
}

func FuzzParseDeviceNumber(f *testing.F) { fuzzNumber(f, parseDeviceNumber, 99) }

func FuzzParseNetworkCard(f *testing.F) { fuzzNumber(f, parseNetworkCard, MaxNetworkCard) }

func FuzzParseInterfaceID(f *testing.F) {
	for _, s := range idSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		id, err := parseInterfaceID(body)
		if err != nil {
			return
		}
		if id != strings.TrimSpace(body) || !strings.HasPrefix(id, "eni-") || len(id) < 5 || len(id) > 36 ||
			strings.Trim(id[4:], "0123456789abcdef") != "" {
			t.Fatalf("%q accepted as %q", body, id)
		}
	})
}

func FuzzParseIDList(f *testing.F) {
	for _, s := range idSeeds {
		f.Add(s)
	}
	f.Add("sg-5a61d333\nsg-0c387755222ba8d2e\n")
	f.Fuzz(func(t *testing.T, body string) {
		ids, err := parseIDList(body, "sg")
		if err != nil {
			return
		}
		if len(ids) == 0 || len(ids) > MaxAddresses {
			t.Fatalf("%d ids", len(ids))
		}
		for _, id := range ids {
			if !isResourceID(id, "sg") {
				t.Fatalf("accepted %q", id)
			}
		}
	})
}
