package ipbatch

import (
	"slices"
	"testing"
)

func TestSplit(t *testing.T) {
	m, r6, sysctls := Split([]string{
		"sysctl net.ipv6.conf.eth1.accept_ra=0",
		"ip link set dev eth1 up",
		"ip -4 addr add 100.64.2.10/24 dev eth1 noprefixroute",
		"-6 route add default via fe80:ec2::1 dev eth1 table 10001 proto 236",
		"ip -6 rule add from 2001:db8:0:2::10 lookup 10001 pref 10001 proto 236",
		"ip -4 rule add from 100.64.2.10 lookup 10001 pref 10001 proto 236",
	})
	wantM := "link set dev eth1 up\n" +
		"addr add 100.64.2.10/24 dev eth1 noprefixroute\n" +
		"route add ::/0 via fe80:ec2::1 dev eth1 table 10001 proto 236\n" +
		"rule add from 100.64.2.10 lookup 10001 pref 10001 proto 236\n"
	if m != wantM {
		t.Errorf("main batch:\n%s\nwant:\n%s", m, wantM)
	}
	if r6 != "rule add from 2001:db8:0:2::10 lookup 10001 pref 10001 proto 236\n" {
		t.Errorf("IPv6 rules batch: %q", r6)
	}
	if !slices.Equal(sysctls, []string{"net.ipv6.conf.eth1.accept_ra=0"}) {
		t.Errorf("sysctls %q", sysctls)
	}
}
