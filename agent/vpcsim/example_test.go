package vpcsim_test

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/ec2net/ec2net/agent/vpcsim"
)

// A bed with a primary and a hot-attached secondary ENI, probed before
// anything configures the secondary: its address fails, the primary's
// passes. (Needs root; not run as a test.)
func Example() {
	v, err := vpcsim.New(vpcsim.Options{Prefix: "demo", NoDAD: true})
	if err != nil {
		panic(err)
	}
	defer v.Close()
	sub := netip.MustParsePrefix("100.64.1.0/24")
	if err := v.AddSubnet(sub, netip.MustParsePrefix("2001:db8:1:1::/64")); err != nil {
		panic(err)
	}
	if err := v.LaunchPrimary(vpcsim.ENISpec{
		Name: "eth0", MAC: "02:00:00:00:01:00", ID: "eni-0001",
		SubnetIPv4: sub, IPv4: []netip.Addr{netip.MustParseAddr("100.64.1.10")},
	}); err != nil {
		panic(err)
	}
	if err := v.Attach(vpcsim.ENISpec{
		Name: "eth1", MAC: "02:00:00:00:02:00", ID: "eni-0002", Device: 1,
		SubnetIPv4: sub, IPv4: []netip.Addr{netip.MustParseAddr("100.64.1.20")},
	}); err != nil {
		panic(err)
	}
	// ... run `ec2net apply` in the instance:
	//   out, err := v.Exec(v.Instance, "ec2net", "apply", "--imds-endpoint", "http://169.254.169.254")
	for _, r := range v.ProbeAddrs(context.Background(),
		netip.MustParseAddr("100.64.1.10"), netip.MustParseAddr("100.64.1.20")) {
		fmt.Println(r)
	}
	drops, _ := v.Drops()
	fmt.Print(drops)
}
