package vpcsim

import (
	"fmt"
	"net/netip"
)

// LargeSubnet is one dual-stack subnet LargeENIs places ENIs in.
type LargeSubnet struct{ IPv4, IPv6 netip.Prefix }

// LargeENIs describes the secondary ENIs of a large instance for
// benchmarks (issue 14: 15 ENIs × 100 addresses): n ENIs eth1..ethN with
// device numbers 1..n and MACs 02:ec:20:00:<tag>:<i>, three to a subnet
// 100.64.(16+k).0/24 + 2001:db8:0:(10+k)::/64, each with v4 IPv4 (at most
// 80: three ENIs share a /24) and v6 IPv6 addresses. Add the subnets with
// AddSubnet, then attach the ENIs.
func LargeENIs(tag byte, n, v4, v6 int) ([]LargeSubnet, []ENISpec, error) {
	if n < 1 || n > 99 || v4 < 1 || v4 > 80 || v6 < 0 || v6 > 4096 {
		return nil, nil, fmt.Errorf("vpcsim: LargeENIs(%d, %d, %d): want 1-99 ENIs, 1-80 IPv4 and 0-4096 IPv6 addresses each", n, v4, v6)
	}
	var subnets []LargeSubnet
	var enis []ENISpec
	for i := 1; i <= n; i++ {
		k, j := (i-1)/3, (i-1)%3
		sub := LargeSubnet{
			IPv4: netip.MustParsePrefix(fmt.Sprintf("100.64.%d.0/24", 16+k)),
			IPv6: netip.MustParsePrefix(fmt.Sprintf("2001:db8:0:%x::/64", 0x10+k)),
		}
		if j == 0 {
			subnets = append(subnets, sub)
		}
		e := ENISpec{Name: fmt.Sprintf("eth%d", i), MAC: fmt.Sprintf("02:ec:20:00:%02x:%02x", tag, i),
			ID: fmt.Sprintf("eni-0c00000000000%02x%02x", tag, i), Device: i, SubnetIPv4: sub.IPv4, SubnetIPv6: sub.IPv6}
		for a := range v4 {
			e.IPv4 = append(e.IPv4, netip.AddrFrom4([4]byte{100, 64, byte(16 + k), byte(10 + v4*j + a)}))
		}
		for a := range v6 {
			e.IPv6 = append(e.IPv6, netip.MustParseAddr(fmt.Sprintf("2001:db8:0:%x::%x:%x", 0x10+k, i, 0x10+a)))
		}
		enis = append(enis, e)
	}
	return subnets, enis, nil
}
