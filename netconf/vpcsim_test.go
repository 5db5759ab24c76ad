package netconf

import (
	"context"
	"net/netip"
	"testing"

	"github.com/ec2net/ec2net/agent/vpcsim"
)

// TestTrafficInSimulatedVPC applies ec2net's layout in the simulated VPC
// (source/destination check on) with a secondary ENI in the primary's own
// subnet and one in another subnet, and checks that every address, the
// primary's included, passes traffic both ways afterwards.
func TestTrafficInSimulatedVPC(t *testing.T) {
	v := vpcsim.NewForTestOptions(t, vpcsim.Options{Prefix: "ncsim", NoDAD: true})
	subA4, subA6 := pfx("100.64.1.0/24"), pfx("2001:db8:1:1::/64")
	subB4, subB6 := pfx("100.64.2.0/24"), pfx("2001:db8:1:2::/64")
	if err := v.AddSubnet(subA4, subA6); err != nil {
		t.Fatal(err)
	}
	if err := v.AddSubnet(subB4, subB6); err != nil {
		t.Fatal(err)
	}
	specs := []vpcsim.ENISpec{
		{Name: "eth0", MAC: "02:00:00:00:a1:00", ID: "eni-000a", Device: 0, SubnetIPv4: subA4, SubnetIPv6: subA6,
			IPv4: ips("100.64.1.10"), IPv6: ips("2001:db8:1:1::10")},
		// Same subnet as the primary: the case a prefix route in main breaks.
		{Name: "eth1", MAC: "02:00:00:00:a1:01", ID: "eni-000b", Device: 1, SubnetIPv4: subA4, SubnetIPv6: subA6,
			IPv4: ips("100.64.1.20", "100.64.1.21"), IPv6: ips("2001:db8:1:1::20")},
		{Name: "eth2", MAC: "02:00:00:00:a1:02", ID: "eni-000c", Device: 2, SubnetIPv4: subB4, SubnetIPv6: subB6,
			IPv4: ips("100.64.2.20"), IPv6: ips("2001:db8:1:2::20")},
	}
	s := launchSpecs(t, v, specs)
	var all []netip.Addr
	for _, sp := range specs {
		all = append(append(all, sp.IPv4...), sp.IPv6...)
	}
	ns, err := v.Handle(v.Instance)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{NetNS: ns, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mustApply(t, r, s, cfg())
	for _, rep := range v.ProbeAddrs(context.Background(), all...) {
		if !rep.OK() {
			t.Errorf("after apply: %v", rep)
		}
	}
	if t.Failed() {
		drops, _ := v.Drops()
		t.Logf("source/destination check drops:\n%s", drops)
	}
	if err := v.ProbeIMDS(context.Background()); err != nil {
		t.Errorf("IMDS unreachable after apply: %v", err)
	}
}
