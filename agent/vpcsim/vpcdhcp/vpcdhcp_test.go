package vpcdhcp_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/vishvananda/netlink"
)

var (
	subnet4 = netip.MustParsePrefix("100.64.7.0/24")
	subnet6 = netip.MustParsePrefix("2001:db8:0:7::/64")
	primary = vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:07:00", ID: "eni-0d0000000000000700",
		SubnetIPv4: subnet4, SubnetIPv6: subnet6,
		IPv4: vpcsim.Addrs("100.64.7.10", "100.64.7.11"),
		IPv6: vpcsim.Addrs("2001:db8:0:7::10", "2001:db8:0:7::11")}
	second = vpcsim.ENISpec{Name: "eth1", MAC: "02:ec:20:00:07:01", ID: "eni-0d0000000000000701", Device: 1,
		SubnetIPv4: subnet4, IPv4: vpcsim.Addrs("100.64.7.20")}
)

// bed is a VPC whose primary ENI is plugged in unconfigured (as at boot,
// before DHCP), with the DHCP service running.
func bed(t *testing.T, prefix string) (*vpcsim.VPC, *vpcsim.DHCP) {
	t.Helper()
	v := vpcsim.NewForTestOptions(t, vpcsim.Options{Prefix: prefix, NoDAD: true})
	must(t, v.AddSubnet(subnet4, subnet6))
	must(t, v.LaunchPrimaryUnconfigured(primary))
	d, err := v.StartDHCP(vpcsim.DHCPOptions{})
	must(t, err)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("DHCP close: %v", err)
		}
	})
	return v, d
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func linkUp(t *testing.T, v *vpcsim.VPC, name string) {
	t.Helper()
	h, err := v.Handle(v.Instance)
	must(t, err)
	nl, err := netlink.NewHandleAt(h)
	must(t, err)
	defer nl.Close()
	l, err := nl.LinkByName(name)
	must(t, err)
	must(t, nl.LinkSetUp(l))
}

// TestDHCPv4 runs a whole DISCOVER/OFFER/REQUEST/ACK with a Go client in
// the instance and checks every option the VPC sends; then a second ENI
// of the same subnet gets its own address, and a REQUEST for someone
// else's address is refused.
func TestDHCPv4(t *testing.T) {
	v, d := bed(t, "dhcp4")
	linkUp(t, v, "eth0")
	lease := request(t, v, "eth0")
	ack := lease.ACK
	if got := ack.YourIPAddr.String(); got != "100.64.7.10" {
		t.Errorf("yiaddr %s, want the primary IPv4 100.64.7.10", got)
	}
	if ones, _ := ack.SubnetMask().Size(); ones != 24 {
		t.Errorf("mask /%d, want /24", ones)
	}
	if r := ack.Router(); len(r) != 1 || r[0].String() != "100.64.7.1" {
		t.Errorf("routers %v, want [100.64.7.1]", r)
	}
	if dns := ack.DNS(); len(dns) != 1 || dns[0].String() != "100.64.7.2" {
		t.Errorf("DNS %v, want [100.64.7.2] (subnet base + 2)", dns)
	}
	if mtu := ack.Options.Get(dhcpv4.OptionInterfaceMTU); len(mtu) != 2 || int(mtu[0])<<8|int(mtu[1]) != 9001 {
		t.Errorf("interface MTU option %v, want 9001", mtu)
	}
	if lt := ack.IPAddressLeaseTime(0); lt != time.Hour {
		t.Errorf("lease time %v, want 1h", lt)
	}
	if sid := ack.ServerIdentifier(); sid.String() != "100.64.7.1" {
		t.Errorf("server identifier %v", sid)
	}

	// Another ENI of the subnet, hot-attached: its own primary address.
	must(t, v.Attach(second))
	linkUp(t, v, "eth1")
	if got := request(t, v, "eth1").ACK.YourIPAddr.String(); got != "100.64.7.20" {
		t.Errorf("eth1 got %s, want 100.64.7.20", got)
	}
	// Asking for eth1's address from eth0 is refused.
	c := client(t, v, "eth0")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Request(ctx, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("100.64.7.20"))))
	var nak *nclient4.ErrNak
	if !errors.As(err, &nak) {
		t.Errorf("REQUEST for another ENI's address: %v, want a NAK", err)
	}
	st := d.Stats()["br1"]
	t.Logf("CHECK DHCPv4: eth0 100.64.7.10/24 router .1 DNS .2 MTU 9001 lease 1h; eth1 100.64.7.20; foreign REQUEST NAKed (stats %+v)", st)
}

// TestDHCPLost: with answers turned off nothing answers (the client times
// out), and turning them on again serves the same lease.
func TestDHCPLost(t *testing.T) {
	v, d := bed(t, "dhcpl")
	linkUp(t, v, "eth0")
	d.SetAnswering(false)
	c := client(t, v, "eth0")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := c.Request(ctx); err == nil {
		t.Fatal("got a lease while DHCP was off")
	}
	if st := d.Stats()["br1"]; st.Ignored == 0 || st.Offers != 0 {
		t.Errorf("stats while off: %+v, want ignored requests and no offer", st)
	}
	d.SetAnswering(true)
	if got := request(t, v, "eth0").ACK.YourIPAddr.String(); got != "100.64.7.10" {
		t.Errorf("after DHCP came back: %s", got)
	}
}

func client(t *testing.T, v *vpcsim.VPC, link string) *nclient4.Client {
	t.Helper()
	h, err := v.Handle(v.Instance)
	must(t, err)
	var c *nclient4.Client
	must(t, nsutil.Do(h, func() error {
		var err error
		c, err = nclient4.New(link, nclient4.WithTimeout(time.Second), nclient4.WithRetry(3))
		return err
	}))
	t.Cleanup(func() { c.Close() })
	return c
}

func request(t *testing.T, v *vpcsim.VPC, link string) *nclient4.Lease {
	t.Helper()
	c := client(t, v, link)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.Request(ctx)
	if err != nil {
		t.Fatalf("DHCPv4 on %s: %v", link, err)
	}
	return l
}

// TestDHCPv6 sends Solicit and Request from the instance over UDP, as a
// stateful client does, and checks the IA_NA carries every IPv6 address
// of the ENI with EC2's timers.
func TestDHCPv6(t *testing.T) {
	v, _ := bed(t, "dhcp6")
	linkUp(t, v, "eth0")
	h, err := v.Handle(v.Instance)
	must(t, err)
	var (
		conn    *net.UDPConn
		ifindex int
	)
	must(t, nsutil.Do(h, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		ifindex = ifi.Index
		conn, err = listenClient6(context.Background(), "eth0")
		return err
	}))
	defer conn.Close()
	mac, _ := net.ParseMAC(primary.MAC)
	// A DUID without the MAC (as networkd's default DUID-EN): the server
	// must go by the frame's source MAC.
	sol, err := dhcpv6.NewSolicit(mac, dhcpv6.WithClientID(&dhcpv6.DUIDEN{EnterpriseNumber: 43793, EnterpriseIdentifier: []byte{1, 2, 3, 4}}))
	must(t, err)
	adv := exchange6(t, conn, ifindex, sol, dhcpv6.MessageTypeAdvertise)
	checkIANA(t, adv)
	req, err := dhcpv6.NewRequestFromAdvertise(adv)
	must(t, err)
	reply := exchange6(t, conn, ifindex, req, dhcpv6.MessageTypeReply)
	checkIANA(t, reply)
	t.Logf("CHECK DHCPv6: Solicit -> Advertise, Request -> Reply, IA_NA %v", reply.Options.OneIANA().Options.Addresses())
}

func checkIANA(t *testing.T, m *dhcpv6.Message) {
	t.Helper()
	ia := m.Options.OneIANA()
	if ia == nil {
		t.Fatalf("%s without IA_NA: %s", m.Type(), m)
	}
	var got []string
	for _, a := range ia.Options.Addresses() {
		got = append(got, a.IPv6Addr.String())
		if a.PreferredLifetime != 150*time.Second || a.ValidLifetime != 450*time.Second {
			t.Errorf("%s lifetimes %v/%v, want 150s/450s", a.IPv6Addr, a.PreferredLifetime, a.ValidLifetime)
		}
	}
	want := []string{"2001:db8:0:7::10", "2001:db8:0:7::11"}
	if !slices.Equal(got, want) {
		t.Errorf("%s IA_NA addresses %v, want %v", m.Type(), got, want)
	}
	if ia.T1 != 75*time.Second || ia.T2 != 120*time.Second {
		t.Errorf("T1/T2 %v/%v, want 75s/120s", ia.T1, ia.T2)
	}
}

// TestRouterAdvertisement: with accept_ra on, the instance's kernel learns
// a default route via fe80:ec2::1 and the subnet /64 on-link from the
// VPC's advertisement, and configures no SLAAC address (the prefix is not
// autonomous).
func TestRouterAdvertisement(t *testing.T) {
	v, d := bed(t, "dhcpra")
	must(t, v.Sysctl(v.Instance, "net.ipv6.conf.eth0.accept_ra", "1"))
	linkUp(t, v, "eth0")
	h, err := v.Handle(v.Instance)
	must(t, err)
	nl, err := netlink.NewHandleAt(h)
	must(t, err)
	defer nl.Close()
	deadline := time.Now().Add(10 * time.Second)
	var defGW, onLink bool
	for time.Now().Before(deadline) && !(defGW && onLink) {
		routes, err := nl.RouteList(nil, netlink.FAMILY_V6)
		must(t, err)
		for _, r := range routes {
			if r.Protocol == 9 && r.Gw != nil && r.Gw.String() == "fe80:ec2::1" && (r.Dst == nil || r.Dst.String() == "::/0") {
				defGW = true // RTPROT_RA
			}
			// The kernel installs an advertised on-link prefix as its own
			// (proto kernel, with an expiry); nothing else here has an
			// address in the subnet.
			if r.Dst != nil && r.Dst.String() == subnet6.String() && r.Gw == nil {
				onLink = true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !defGW || !onLink {
		t.Fatalf("after the router advertisement: default via fe80:ec2::1 %v, %s on-link %v (stats %+v)", defGW, subnet6, onLink, d.Stats()["br1"])
	}
	addrs, err := nl.AddrList(nil, netlink.FAMILY_V6)
	must(t, err)
	for _, a := range addrs {
		if subnet6.Contains(netip.MustParseAddr(a.IP.String())) {
			t.Errorf("SLAAC address %s configured: the prefix must not be autonomous", a.IP)
		}
	}
	t.Logf("CHECK router advertisement: default via fe80:ec2::1 proto ra, %s on-link, no SLAAC address", subnet6)
}
