package plan

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
)

// Whatever the metadata says, no rule or local route may select the
// primary's addresses (from IMDS or on its link), the IMDS addresses or
// every address: the ENI is held with the reason instead.
func TestGuardHoldsMetadataThatWouldCutTheHostOff(t *testing.T) {
	links := IndexLinks(testLinks)
	links.Addrs = map[int][]netip.Addr{2: {ip("100.64.1.99")}} // eth0's DHCP address, not in IMDS
	for _, tc := range []struct {
		name   string
		edit   func(e *imds.ENI)
		reason string
	}{
		{"primary's address listed under a secondary", func(e *imds.ENI) {
			e.SubnetIPv4 = pfx("100.64.1.0/24")
			e.IPv4 = ips("100.64.1.20", "100.64.1.10")
		}, "primary ENI's address 100.64.1.10"},
		{"primary's DHCP address listed under a secondary", func(e *imds.ENI) {
			e.SubnetIPv4 = pfx("100.64.1.0/24")
			e.IPv4 = ips("100.64.1.20", "100.64.1.99")
		}, "100.64.1.99"},
		{"an IPv6 prefix of ::/0", func(e *imds.ENI) { e.IPv6Prefixes = []netip.Prefix{pfx("::/0")} }, "every address"},
		{"a prefix covering the primary", func(e *imds.ENI) {
			e.IPv4Prefixes = []netip.Prefix{pfx("100.64.0.0/16")}
		}, "primary ENI's address"},
		{"a prefix covering IMDS", func(e *imds.ENI) {
			e.IPv6Prefixes = []netip.Prefix{pfx("fd00:ec2::/80")}
		}, "IMDS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := secondENI()
			tc.edit(&e)
			st, err := Desired(snapOf(primaryENI(), e), config.Default(), links)
			if err != nil {
				t.Fatal(err)
			}
			d := st.ENI(macSecond)
			if d.Disposition != Hold || !strings.Contains(d.Reason, tc.reason) || len(d.Rules)+len(d.Routes)+len(d.Addrs) != 0 {
				t.Fatalf("got %v %q (%d rules), want held for %q", d.Disposition, d.Reason, len(d.Rules), tc.reason)
			}
			if p := st.ENI(macPrimary); p.Disposition != Configure {
				t.Errorf("the primary is not configured any more: %v %q", p.Disposition, p.Reason)
			}
		})
	}
	// The same secondary with its own addresses is configured.
	st, err := Desired(snapOf(primaryENI(), secondENI()), config.Default(), links)
	if err != nil || st.ENI(macSecond).Disposition != Configure {
		t.Fatalf("a safe secondary is not configured: %v %+v", err, st.ENI(macSecond))
	}
}

// An ENI IMDS lists without an address of either family and without a
// link here (EFA-only) is settled, not pending; with a link it is lag.
func TestEFAOnlyIsIdleOnlyWithoutALink(t *testing.T) {
	efa := imds.ENI{MAC: "02:00:00:00:00:99", InterfaceID: "eni-0efa", DeviceNumber: 0, NetworkCard: 3, HasNetworkCard: true,
		SubnetIPv4: pfx("100.64.1.0/24"), State: imds.Pending, NoAddresses: true, Reason: "no address"}
	st, err := Desired(snapOf(primaryENI(), efa), config.Default(), IndexLinks(testLinks))
	if err != nil || st.ENI(efa.MAC).Disposition != Idle {
		t.Fatalf("EFA-only without a link: %v %+v", err, st.ENI(efa.MAC))
	}
	efa.MAC = macThird // eth2 has this MAC
	st, err = Desired(snapOf(primaryENI(), efa), config.Default(), IndexLinks(testLinks))
	if err != nil || st.ENI(efa.MAC).Disposition != Hold {
		t.Fatalf("no addresses but a link (propagation lag): %v %+v", err, st.ENI(efa.MAC))
	}
}

// Tables reach the last card and device IMDS accepts, below main's rule.
func TestTableRangeCoversEveryCard(t *testing.T) {
	if got := Table(imds.MaxNetworkCard, imds.MaxDeviceNumber); got != TableMax || TableMax >= 32766 || !InRange(Table(31, 1)) {
		t.Fatalf("TableMax %d, table of the last slot %d", TableMax, got)
	}
}
