package imds

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
)

// plausible is a Complete-able secondary ENI for the pure guard tests.
func plausible() ENI {
	return ENI{
		MAC: secondaryMAC(1), InterfaceID: "eni-0b01", DeviceNumber: 1,
		SubnetIPv4: netip.MustParsePrefix("100.64.2.0/24"), SubnetIPv6: prefixes("2001:db8:0:2::/64"),
		VPCIPv4: prefixes("100.64.0.0/16"), VPCIPv6: prefixes("2001:db8::/56"),
		IPv4: addrs("100.64.2.11"), IPv6: addrs("2001:db8:0:2::11"),
		IPv4Prefixes: prefixes("100.64.2.32/28"), IPv6Prefixes: prefixes("2001:db8:0:2:1::/80"),
	}
}

func TestGuard(t *testing.T) {
	e := plausible()
	if why := guard(&e); why != "" {
		t.Fatalf("plausible ENI refused: %s", why)
	}
	cases := []struct {
		name   string
		edit   func(e *ENI)
		reason string
	}{
		{"IPv4 subnet /0", func(e *ENI) { e.SubnetIPv4 = netip.MustParsePrefix("0.0.0.0/0") }, "/0"},
		{"IPv4 subnet /32", func(e *ENI) { e.SubnetIPv4 = netip.MustParsePrefix("100.64.2.11/32") }, "/16../28"},
		{"IPv4 subnet /29", func(e *ENI) { e.SubnetIPv4 = netip.MustParsePrefix("100.64.2.8/29") }, "/16../28"},
		{"IPv4 subnet /15", func(e *ENI) { e.SubnetIPv4 = netip.MustParsePrefix("100.64.0.0/15") }, "/16../28"},
		{"IPv4 subnet loopback", func(e *ENI) { e.SubnetIPv4 = netip.MustParsePrefix("127.0.0.0/16") }, "loopback"},
		{"IPv4 subnet has IMDS", func(e *ENI) { e.SubnetIPv4 = netip.MustParsePrefix("169.254.169.0/24") }, "169.254.169.254"},
		{"IPv6 subnet /0", func(e *ENI) { e.SubnetIPv6 = prefixes("::/0") }, "/0"},
		{"IPv6 subnet /80", func(e *ENI) { e.SubnetIPv6 = prefixes("2001:db8:0:2::/80") }, "/44../64"},
		{"IPv6 subnet /40", func(e *ENI) { e.SubnetIPv6 = prefixes("2001:db8::/40") }, "/44../64"},
		{"IPv6 subnet has IMDS", func(e *ENI) { e.SubnetIPv6 = prefixes("fd00:ec2::/64") }, "fd00:ec2::254"},
		{"IPv4 prefix /0", func(e *ENI) { e.IPv4Prefixes = prefixes("0.0.0.0/0") }, "/0"},
		{"IPv4 prefix /27", func(e *ENI) { e.IPv4Prefixes = prefixes("100.64.2.32/27") }, "not a /28"},
		{"IPv6 prefix ::/0", func(e *ENI) { e.IPv6Prefixes = prefixes("::/0") }, "/0"},
		{"IPv6 prefix /64", func(e *ENI) { e.IPv6Prefixes = prefixes("2001:db8:0:2::/64") }, "not a /80"},
		{"IPv6 prefix multicast", func(e *ENI) { e.IPv6Prefixes = prefixes("ff02::/80") }, "multicast"},
		{"VPC /0", func(e *ENI) { e.VPCIPv4 = prefixes("0.0.0.0/0") }, "VPC CIDR"},
		{"unspecified IPv4", func(e *ENI) { e.IPv4 = addrs("0.0.0.0") }, "unspecified"},
		{"loopback IPv4", func(e *ENI) { e.IPv4 = addrs("100.64.2.11", "127.0.0.1") }, "loopback"},
		{"multicast IPv4", func(e *ENI) { e.IPv4 = addrs("224.0.0.1") }, "multicast"},
		{"IMDS IPv4", func(e *ENI) { e.IPv4LinkLocal = addrs("169.254.169.254") }, "IMDS"},
		{"unspecified IPv6", func(e *ENI) { e.IPv6 = addrs("::") }, "unspecified"},
		{"loopback IPv6", func(e *ENI) { e.IPv6 = addrs("::1") }, "loopback"},
		{"multicast IPv6", func(e *ENI) { e.IPv6 = addrs("ff02::1") }, "multicast"},
		{"IMDS IPv6", func(e *ENI) { e.IPv6 = addrs("fd00:ec2::254") }, "IMDS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := plausible()
			tc.edit(&e)
			why := guard(&e)
			if why == "" || !strings.Contains(why, tc.reason) || strings.Contains(why, "\n") {
				t.Fatalf("reason %q, want one line mentioning %q", why, tc.reason)
			}
		})
	}
	// Subnet bounds are inclusive.
	for _, ok := range []func(e *ENI){
		func(e *ENI) { e.SubnetIPv4, e.IPv4Prefixes = netip.MustParsePrefix("100.64.0.0/16"), nil },
		func(e *ENI) {
			e.SubnetIPv4, e.IPv4, e.IPv4Prefixes = netip.MustParsePrefix("100.64.2.0/28"), addrs("100.64.2.11"), nil
		},
		func(e *ENI) { e.SubnetIPv6 = prefixes("2001:db8::/44") },
	} {
		e := plausible()
		ok(&e)
		if why := guard(&e); why != "" {
			t.Errorf("refused at the bound: %s", why)
		}
	}
}

// Through the client: each guard makes only its ENI Invalid.
func TestGuardsMakeOnlyTheirENIInvalid(t *testing.T) {
	s := instance(0)
	edits := map[int]func(e *fakeimds.ENI){
		1: func(e *fakeimds.ENI) { e.SubnetIPv4 = "0.0.0.0/0" },
		2: func(e *fakeimds.ENI) { e.SubnetIPv6, e.IPv6 = []string{"::/0"}, []string{"2001:db8:0:2::5"} },
		3: func(e *fakeimds.ENI) { e.SubnetIPv4 = "100.64.2.11/32" },
		4: func(e *fakeimds.ENI) {
			e.SubnetIPv6, e.IPv6Prefixes = []string{"2001:db8:0:2::/64"}, []string{"::/0"}
		},
		5: func(e *fakeimds.ENI) { e.IPv4Prefixes = []string{"100.64.2.0/24"} },
		6: func(e *fakeimds.ENI) { e.SubnetIPv4, e.IPv4 = "169.254.0.0/16", []string{"169.254.169.254"} },
	}
	for i := 1; i <= len(edits); i++ {
		e := secondary(i)
		edits[i](&e)
		s.AttachENI(e)
	}
	s.AttachENI(secondary(7))
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	for i, want := range map[int]string{1: "/0", 2: "/0", 3: "/16../28", 4: "/0", 5: "not a /28", 6: "IMDS"} {
		wantState(t, mustENI(t, snap, secondaryMAC(i)), Invalid, want)
	}
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
	wantState(t, mustENI(t, snap, secondaryMAC(7)), Complete, "")
}

func TestSharedAddressWithPrimaryInvalidatesTheOther(t *testing.T) {
	s := instance(2)
	// A short inconsistent read lists the primary's address under a
	// secondary ENI in the same subnet.
	stray := secondary(3)
	stray.SubnetIPv4 = "100.64.1.0/24"
	stray.IPv4 = []string{"100.64.1.30", "100.64.1.10"}
	s.AttachENI(stray)
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(3)), Invalid, "address 100.64.1.10 is also listed for the primary ENI "+primaryMAC)
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Complete, "")
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Complete, "")
}

func TestSharedAddressBetweenSecondariesInvalidatesBoth(t *testing.T) {
	s := instance(3)
	s.AssignIPv4(secondaryMAC(2), "100.64.2.11") // secondary 1's address
	// A delegated prefix of secondary 3 overlapping primary's IPv6.
	s.Set("network/interfaces/macs/"+secondaryMAC(3)+"/subnet-ipv6-cidr-blocks", "2001:db8:0:1::/64")
	s.Set("network/interfaces/macs/"+secondaryMAC(3)+"/ipv6-prefix", "2001:db8:0:1::/80")
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Invalid, "address 100.64.2.11 is also listed for ENI "+secondaryMAC(2))
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Invalid, "address 100.64.2.11 is also listed for ENI "+secondaryMAC(1))
	wantState(t, mustENI(t, snap, secondaryMAC(3)), Invalid, "2001:db8:0:1::10 is also listed for the primary ENI")
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")

	// Resolved: the next read accepts them again (nothing was cached).
	s.UnassignIPv4(secondaryMAC(2), "100.64.2.11")
	snap = mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Complete, "")
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Complete, "")
}

func TestMarkSharedAddressesNesting(t *testing.T) {
	enis := []ENI{
		{MAC: "p", Primary: true, IPv4: addrs("100.64.1.10"), IPv4Prefixes: prefixes("100.64.3.0/28")},
		{MAC: "a", IPv4: addrs("100.64.1.20"), IPv4Prefixes: prefixes("100.64.4.0/28")},
		{MAC: "b", IPv4: addrs("100.64.3.5")},                  // inside p's prefix
		{MAC: "c", IPv4: addrs("100.64.4.16", "100.64.9.9")},   // just past a's prefix
		{MAC: "d", State: Unknown, IPv4: addrs("100.64.9.9")},  // evidence only
		{MAC: "x", State: Invalid, IPv4: addrs("100.64.1.20")}, // no evidence: failed validation
	}
	markSharedAddresses(enis)
	if enis[0].State != Complete || enis[1].State != Complete {
		t.Fatalf("primary %v, a %v: want both Complete", enis[0].State, enis[1].State)
	}
	if enis[2].State != Invalid || !strings.Contains(enis[2].Reason, "100.64.3.5 is also listed for the primary ENI p") {
		t.Fatalf("b: %v %q", enis[2].State, enis[2].Reason)
	}
	if enis[3].State != Invalid || !strings.Contains(enis[3].Reason, "100.64.9.9 is also listed for ENI d") {
		t.Fatalf("c: %v %q", enis[3].State, enis[3].Reason)
	}
	if enis[4].State != Unknown || enis[5].Reason != "" {
		t.Fatalf("an Unknown or Invalid ENI changed: %v, %q", enis[4].State, enis[5].Reason)
	}
}
