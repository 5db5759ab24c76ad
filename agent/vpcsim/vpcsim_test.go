package vpcsim

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	subnetA4 = netip.MustParsePrefix("100.64.1.0/24")
	subnetA6 = netip.MustParsePrefix("2001:db8:1:1::/64")
	subnetB4 = netip.MustParsePrefix("100.64.2.0/24")
	subnetB6 = netip.MustParsePrefix("2001:db8:1:2::/64")

	primaryV4 = netip.MustParseAddr("100.64.1.10")
	primaryV6 = netip.MustParseAddr("2001:db8:1:1::10")
)

func addr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func primarySpec() ENISpec {
	return ENISpec{
		Name: "eth0", MAC: "02:00:00:00:01:00", ID: "eni-00000000000000001",
		SubnetIPv4: subnetA4, SubnetIPv6: subnetA6,
		IPv4: []netip.Addr{primaryV4}, IPv6: []netip.Addr{primaryV6},
	}
}

func secondarySpec() ENISpec {
	return ENISpec{
		Name: "eth1", MAC: "02:00:00:00:02:00", ID: "eni-00000000000000002", Device: 1,
		SubnetIPv4: subnetB4, SubnetIPv6: subnetB6,
		IPv4: []netip.Addr{addr("100.64.2.20"), addr("100.64.2.21")},
		IPv6: []netip.Addr{addr("2001:db8:1:2::20")},
	}
}

// newBed is a VPC with two dual-stack subnets and the primary ENI
// launched. DAD is off in the instance so IPv6 probes need no waiting.
func newBed(t *testing.T) *VPC {
	t.Helper()
	v := NewForTestOptions(t, Options{Prefix: "vsim", NoDAD: true})
	if err := v.AddSubnet(subnetA4, subnetA6); err != nil {
		t.Fatal(err)
	}
	if err := v.AddSubnet(subnetB4, subnetB6); err != nil {
		t.Fatal(err)
	}
	if err := v.LaunchPrimary(primarySpec()); err != nil {
		t.Fatal(err)
	}
	return v
}

func instanceNetlink(t *testing.T, v *VPC) *netlink.Handle {
	t.Helper()
	return netlinkIn(t, v, v.Instance)
}

func netlinkIn(t *testing.T, v *VPC, ns string) *netlink.Handle {
	t.Helper()
	h, err := v.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nl.Close)
	return nl
}

// configureByHand does, in the instance, what ec2net is meant to do for a
// secondary ENI: link up, its addresses, and (when table != 0) a route
// table with the subnet and a default route via the gateway plus one
// "from <addr>" rule per address.
func configureByHand(t *testing.T, v *VPC, name string, addrs []netip.Prefix, gw4, gw6 netip.Addr, table int) {
	t.Helper()
	configureIn(t, v, v.Instance, name, addrs, gw4, gw6, table)
}

// configureIn is configureByHand in namespace ns.
func configureIn(t *testing.T, v *VPC, ns, name string, addrs []netip.Prefix, gw4, gw6 netip.Addr, table int) {
	t.Helper()
	nl := netlinkIn(t, v, ns)
	link, err := nl.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	for _, p := range addrs {
		if err := nl.AddrAdd(link, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
			t.Fatalf("add %s: %v", p, err)
		}
	}
	if table == 0 {
		return
	}
	idx := link.Attrs().Index
	for _, p := range addrs {
		gw := gw4
		def := prefix("0.0.0.0/0")
		if p.Addr().Is6() {
			gw, def = gw6, prefix("::/0")
		}
		if p.Addr().Is4() {
			if err := nl.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: ipNet(p.Masked()), Table: table, Scope: netlink.SCOPE_LINK}); err != nil {
				t.Fatalf("table %d subnet route: %v", table, err)
			}
		}
		if err := nl.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: ipNet(def), Gw: net.IP(gw.AsSlice()), Table: table}); err != nil {
			t.Fatalf("table %d default via %s: %v", table, gw, err)
		}
		r := netlink.NewRule()
		r.Src = ipNet(hostPrefix(p.Addr()))
		r.Table = table
		r.Priority = table
		r.Family = unix.AF_INET
		if p.Addr().Is6() {
			r.Family = unix.AF_INET6
		}
		if err := nl.RuleAdd(r); err != nil {
			t.Fatalf("rule from %s: %v", p.Addr(), err)
		}
	}
}

func mustPassOut(t *testing.T, v *VPC, src netip.Addr) {
	t.Helper()
	res, err := v.ProbeTCP(context.Background(), src)
	if err != nil {
		drops, _ := v.Drops()
		t.Fatalf("TCP from %s: %v\ndrops:\n%s%s", src, err, drops, diag(v))
	}
	if res.SeenSource != src {
		t.Fatalf("TCP from %s: the remote host saw %s", src, res.SeenSource)
	}
}

func mustPassIn(t *testing.T, v *VPC, dst netip.Addr) {
	t.Helper()
	res, err := v.ProbeInbound(context.Background(), dst)
	if err != nil {
		drops, _ := v.Drops()
		t.Fatalf("inbound to %s: %v\ndrops:\n%s%s", dst, err, drops, diag(v))
	}
	if want := v.remoteFor(dst); res.SeenSource != want {
		t.Fatalf("inbound to %s: the instance saw %s, want %s", dst, res.SeenSource, want)
	}
}

// fastCtx bounds probes that are expected to fail.
func fastCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	t.Cleanup(cancel)
	return ctx
}

func TestPrimaryProbesPass(t *testing.T) {
	v := newBed(t)
	for _, src := range []netip.Addr{primaryV4, primaryV6} {
		mustPassOut(t, v, src)
		mustPassIn(t, v, src)
		if err := v.ProbeICMP(context.Background(), src); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.ProbeIMDS(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := v.ProbeIMDSIPv6(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := v.IMDS.Requests("PUT /latest/api/token"); n < 2 {
		t.Fatalf("IMDS counted %d token requests, want 2", n)
	}
	if got := v.RemoteSeen(); len(got) != 2 || got[0] != primaryV4 || got[1] != primaryV6 {
		t.Fatalf("remote saw %v", got)
	}
	eni, ok := v.IMDS.ENI("02:00:00:00:01:00")
	if !ok || eni.InterfaceID != "eni-00000000000000001" || len(eni.IPv4) != 1 || eni.IPv4[0] != primaryV4.String() {
		t.Fatalf("IMDS primary ENI: %+v %v", eni, ok)
	}
	if drops, err := v.Drops(); err != nil || drops != "" {
		t.Fatalf("drops on a clean run: %q %v", drops, err)
	}
}

func TestSecondaryENIFailsWithoutPolicyRoutingAndPassesWithIt(t *testing.T) {
	v := newBed(t)
	s := secondarySpec()
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	addrs := []netip.Prefix{
		netip.PrefixFrom(s.IPv4[0], 24), netip.PrefixFrom(s.IPv4[1], 24), netip.PrefixFrom(s.IPv6[0], 128),
	}
	configureByHand(t, v, "eth1", addrs, addr("100.64.2.1"), GatewayLinkLocal, 0)
	var plain []netip.Addr
	for _, a := range addrs {
		plain = append(plain, a.Addr())
	}
	for _, r := range v.ProbeAddrs(fastCtx(t), plain...) {
		t.Log(r)
		if !r.Failed() {
			t.Fatalf("%s: passed without policy routing: the check is not enforced", r)
		}
	}
	drops, err := v.Drops()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("drops:\n%s", drops)
	for _, a := range addrs {
		if !strings.Contains(drops, "from eni1 (eth0 02:00:00:00:01:00) "+a.Addr().String()+":") {
			t.Errorf("drops do not show %s refused from eth0's port:\n%s", a.Addr(), drops)
		}
	}
	// The primary keeps working meanwhile.
	mustPassOut(t, v, primaryV4)
	if err := v.ProbeIMDS(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Now what ec2net does: a table for eth1 and rules for its addresses.
	nl := instanceNetlink(t, v)
	link, err := nl.LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	idx := link.Attrs().Index
	const table = 10001
	routes := []*netlink.Route{
		{LinkIndex: idx, Dst: ipNet(subnetB4), Table: table, Scope: netlink.SCOPE_LINK},
		{LinkIndex: idx, Dst: ipNet(prefix("0.0.0.0/0")), Gw: net.IP(addr("100.64.2.1").AsSlice()), Table: table},
		{LinkIndex: idx, Dst: ipNet(prefix("::/0")), Gw: net.IP(GatewayLinkLocal.AsSlice()), Table: table},
	}
	for _, r := range routes {
		if err := nl.RouteAdd(r); err != nil {
			t.Fatalf("route %v: %v", r, err)
		}
	}
	for _, a := range addrs {
		r := netlink.NewRule()
		r.Src = ipNet(hostPrefix(a.Addr()))
		r.Table, r.Priority = table, table
		r.Family = unix.AF_INET
		if a.Addr().Is6() {
			r.Family = unix.AF_INET6
		}
		if err := nl.RuleAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range v.ProbeAddrs(context.Background(), append(plain, primaryV4, primaryV6)...) {
		t.Log(r)
		if !r.OK() {
			t.Errorf("%s: out %v, in %v, icmp %v", r, r.OutErr, r.InErr, r.ICMPErr)
		}
	}
}

// The same holds for a second ENI in the primary's own subnet.
func TestSecondaryENIInPrimarySubnet(t *testing.T) {
	v := newBed(t)
	s := ENISpec{Name: "eth1", MAC: "02:00:00:00:03:00", ID: "eni-3", Device: 1, SubnetIPv4: subnetA4, IPv4: []netip.Addr{addr("100.64.1.30")}}
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	p := []netip.Prefix{prefix("100.64.1.30/24")}
	configureByHand(t, v, "eth1", p, addr("100.64.1.1"), netip.Addr{}, 0)
	if _, err := v.ProbeTCP(fastCtx(t), addr("100.64.1.30")); err == nil {
		t.Fatal("TCP from the second ENI in the primary subnet passed without policy routing")
	}
	// Hand-made policy routing (the address is on eth1 already).
	nl := instanceNetlink(t, v)
	link, _ := nl.LinkByName("eth1")
	for _, r := range []*netlink.Route{
		{LinkIndex: link.Attrs().Index, Dst: ipNet(subnetA4), Table: 10001, Scope: netlink.SCOPE_LINK},
		{LinkIndex: link.Attrs().Index, Dst: ipNet(prefix("0.0.0.0/0")), Gw: net.IP(addr("100.64.1.1").AsSlice()), Table: 10001},
	} {
		if err := nl.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	r := netlink.NewRule()
	r.Src, r.Table, r.Priority = ipNet(prefix("100.64.1.30/32")), 10001, 10001
	if err := nl.RuleAdd(r); err != nil {
		t.Fatal(err)
	}
	mustPassOut(t, v, addr("100.64.1.30"))
	mustPassIn(t, v, addr("100.64.1.30"))
}

func TestHotAttachLooksLikeEC2(t *testing.T) {
	v := newBed(t)
	h, err := v.Handle(v.Instance)
	if err != nil {
		t.Fatal(err)
	}
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	v.IMDS.SetPropagation(time.Hour)
	if err := v.Attach(secondarySpec()); err != nil {
		t.Fatal(err)
	}
	// Events about eth0 (launched just before) may still arrive; the first
	// one about the new MAC must be its creation, down.
	deadline := time.After(5 * time.Second)
	for seen := false; !seen; {
		select {
		case u := <-updates:
			if u.Attrs().HardwareAddr.String() != "02:00:00:00:02:00" {
				continue
			}
			seen = true
			if u.Header.Type != unix.RTM_NEWLINK || u.Attrs().Name != "eth1" {
				t.Fatalf("first event: type %d link %s", u.Header.Type, u.Attrs().Name)
			}
			if u.Attrs().Flags&net.FlagUp != 0 {
				t.Fatal("the attached link is up")
			}
		case <-deadline:
			t.Fatal("no RTM_NEWLINK for the attached ENI within 5 s")
		}
	}
	nl := instanceNetlink(t, v)
	link, err := nl.LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	if addrs, _ := nl.AddrList(link, netlink.FAMILY_ALL); len(addrs) != 0 {
		t.Fatalf("attached link has addresses: %v", addrs)
	}
	if !v.IMDS.Propagating("02:00:00:00:02:00") {
		t.Fatal("IMDS does not show the ENI as propagating")
	}
	if v.LinkName("02:00:00:00:02:00") != "eth1" {
		t.Fatal("LinkName")
	}
}

func TestAttachLinkOnlyThenAnnounce(t *testing.T) {
	v := newBed(t)
	if err := v.AttachLinkOnly(secondarySpec()); err != nil {
		t.Fatal(err)
	}
	if v.LinkName("02:00:00:00:02:00") != "eth1" {
		t.Fatal("link missing")
	}
	if _, ok := v.IMDS.ENI("02:00:00:00:02:00"); ok {
		t.Fatal("IMDS knows an ENI that was only linked")
	}
	if err := v.AnnounceIMDS("02:00:00:00:02:00"); err != nil {
		t.Fatal(err)
	}
	e, ok := v.IMDS.ENI("02:00:00:00:02:00")
	if !ok || e.DeviceNumber != 1 || len(e.IPv4) != 2 || e.SubnetIPv4 != subnetB4.String() || len(e.SubnetIPv6) != 1 {
		t.Fatalf("IMDS ENI after announce: %+v", e)
	}
}

func TestDetachRemovesLinkAndCheck(t *testing.T) {
	v := newBed(t)
	s := secondarySpec()
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	if err := v.Detach(s.MAC); err != nil {
		t.Fatal(err)
	}
	if name := v.LinkName(s.MAC); name != "" {
		t.Fatalf("link %s still in the instance", name)
	}
	if _, ok := v.IMDS.ENI(s.MAC); ok {
		t.Fatal("IMDS still lists the ENI")
	}
	out := checkObjects(t, v)
	if strings.Contains(out, "eni2") {
		t.Fatalf("the check still has the detached port:\n%s", out)
	}
	out = permanentNeighbours(t, v)
	if strings.Contains(out, "100.64.2.20") || strings.Contains(out, "2001:db8:1:2::20") {
		t.Fatalf("router keeps neighbours of the detached ENI:\n%s", out)
	}
	if err := v.Detach(s.MAC); err == nil {
		t.Fatal("second detach succeeded")
	}
	// Re-attach with the same MAC works.
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
}

func TestAssignUnassignFollowCheck(t *testing.T) {
	v := newBed(t)
	s := secondarySpec()
	s.IPv4 = s.IPv4[:1]
	s.IPv6 = nil
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	extra := addr("100.64.2.40")
	extra6 := addr("2001:db8:1:2::40")
	// The instance holds the addresses with policy routing before the VPC
	// assigns them: only the assignment makes them pass.
	configureByHand(t, v, "eth1", []netip.Prefix{netip.PrefixFrom(s.IPv4[0], 24), netip.PrefixFrom(extra, 24), netip.PrefixFrom(extra6, 128)},
		addr("100.64.2.1"), GatewayLinkLocal, 10001)
	mustPassOut(t, v, s.IPv4[0])
	for _, a := range []netip.Addr{extra, extra6} {
		if _, err := v.ProbeTCP(fastCtx(t), a); err == nil {
			t.Fatalf("%s passed before it was assigned", a)
		}
	}
	if err := v.AssignIPv4(s.MAC, extra); err != nil {
		t.Fatal(err)
	}
	if err := v.AssignIPv6(s.MAC, extra6); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{extra, extra6} {
		mustPassOut(t, v, a)
		mustPassIn(t, v, a)
	}
	e, _ := v.IMDS.ENI(s.MAC)
	if len(e.IPv4) != 2 || e.IPv4[1] != extra.String() || len(e.IPv6) != 1 {
		t.Fatalf("IMDS after assign: %+v", e)
	}
	if err := v.UnassignIPv4(s.MAC, extra); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ProbeTCP(fastCtx(t), extra); err == nil {
		t.Fatalf("%s passed after it was unassigned", extra)
	}
	if err := v.UnassignIPv6(s.MAC, extra6); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ProbeInbound(fastCtx(t), extra6); err == nil {
		t.Fatalf("inbound to %s passed after it was unassigned", extra6)
	}
	e, _ = v.IMDS.ENI(s.MAC)
	if len(e.IPv4) != 1 || len(e.IPv6) != 0 {
		t.Fatalf("IMDS after unassign: %+v", e)
	}
	// Addresses outside the test ranges or the subnet are refused.
	if err := v.AssignIPv4(s.MAC, addr("100.64.1.99")); err == nil {
		t.Fatal("assigned an address of another subnet")
	}
}

func TestDelegatedPrefixes(t *testing.T) {
	v := newBed(t)
	s := secondarySpec()
	s.IPv4Prefixes = []netip.Prefix{prefix("100.64.2.48/28")}
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	p6 := prefix("2001:db8:1:2:a::/80")
	if err := v.AssignPrefix(s.MAC, p6); err != nil {
		t.Fatal(err)
	}
	in4, in6 := addr("100.64.2.50"), addr("2001:db8:1:2:a::5")
	configureByHand(t, v, "eth1", []netip.Prefix{netip.PrefixFrom(s.IPv4[0], 24), hostPrefix(in4), hostPrefix(in6)},
		addr("100.64.2.1"), GatewayLinkLocal, 10001)
	for _, a := range []netip.Addr{in4, in6} {
		mustPassOut(t, v, a)
		mustPassIn(t, v, a)
	}
	e, _ := v.IMDS.ENI(s.MAC)
	if len(e.IPv4Prefixes) != 1 || len(e.IPv6Prefixes) != 1 || e.IPv6Prefixes[0] != p6.String() {
		t.Fatalf("IMDS prefixes: %+v", e)
	}
	if err := v.UnassignPrefix(s.MAC, p6); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ProbeTCP(fastCtx(t), in6); err == nil {
		t.Fatalf("%s passed after its prefix was unassigned", in6)
	}
}

func TestRenameKeepsState(t *testing.T) {
	v := newBed(t)
	s := secondarySpec()
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	if err := v.Rename(s.MAC, "ens6"); err != nil {
		t.Fatal(err)
	}
	nl := instanceNetlink(t, v)
	l, err := nl.LinkByName("ens6")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp != 0 {
		t.Fatal("a down link came up through the rename")
	}
	if err := nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	if err := v.Rename(s.MAC, "enX1"); err != nil {
		t.Fatal(err)
	}
	l, err = nl.LinkByName("enX1")
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Fatal("an up link stayed down after the rename")
	}
	if v.LinkName(s.MAC) != "enX1" {
		t.Fatal("LinkName after rename")
	}
}

func TestDockerLikePublishedPort(t *testing.T) {
	v := newBed(t)
	port, container, err := v.AddDockerLikeBridge()
	if err != nil {
		t.Fatal(err)
	}
	if port != DockerHostPort || container != DockerContainer {
		t.Fatalf("got %d %s", port, container)
	}
	if err := v.ProbePublishedPort(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The amazon-ec2-net-utils #97 mistake: a rule sending everything from
	// the primary address to a table that only knows eth0 also catches the
	// DNAT'd connection to the container. The probe must notice.
	nl := instanceNetlink(t, v)
	eth0, _ := nl.LinkByName("eth0")
	if err := nl.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipNet(prefix("0.0.0.0/0")), Gw: net.IP(addr("100.64.1.1").AsSlice()), Table: 10000}); err != nil {
		t.Fatal(err)
	}
	r := netlink.NewRule()
	r.Src, r.Table, r.Priority = ipNet(hostPrefix(primaryV4)), 10000, 10000
	if err := nl.RuleAdd(r); err != nil {
		t.Fatal(err)
	}
	if err := v.ProbePublishedPort(fastCtx(t)); err == nil {
		t.Fatal("the published port still works with the #97 rule: the probe cannot detect the regression")
	}
}

func TestRPFilterStrictDropsSecondaryWithoutRules(t *testing.T) {
	v := newBed(t)
	for _, key := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
		if err := v.Sysctl(v.Instance, key, "1"); err != nil {
			t.Fatal(err)
		}
	}
	s := secondarySpec()
	s.IPv6 = nil
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	configureByHand(t, v, "eth1", []netip.Prefix{netip.PrefixFrom(s.IPv4[0], 24)}, addr("100.64.2.1"), netip.Addr{}, 10001)
	mustPassOut(t, v, s.IPv4[0])
	mustPassIn(t, v, s.IPv4[0])
	out, err := v.Exec(v.Instance, "cat", "/proc/sys/net/ipv4/conf/eth1/rp_filter")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Fatalf("eth1 rp_filter %q %v", out, err)
	}
}

func TestRefusesAddressesOutsideTestRanges(t *testing.T) {
	v := NewForTest(t, "vsim")
	if err := v.AddSubnet(prefix("198.51.100.0/24"), netip.Prefix{}); err == nil {
		t.Fatal("accepted a subnet outside 100.64.0.0/10")
	}
	if err := v.AddSubnet(netip.Prefix{}, prefix("2001:db9::/64")); err == nil {
		t.Fatal("accepted a subnet outside 2001:db8::/32")
	}
	if err := v.AddSubnet(subnetA4, netip.Prefix{}); err != nil {
		t.Fatal(err)
	}
	if err := v.AddSubnet(prefix("100.64.1.128/25"), netip.Prefix{}); err == nil {
		t.Fatal("accepted an overlapping subnet")
	}
	bad := primarySpec()
	bad.SubnetIPv6 = netip.Prefix{}
	bad.IPv6 = nil
	bad.IPv4 = []netip.Addr{addr("100.64.9.9")}
	if err := v.LaunchPrimary(bad); err == nil {
		t.Fatal("launched a primary with an address outside its subnet")
	}
	if name := v.LinkName(bad.MAC); name != "" {
		t.Fatalf("a refused ENI left link %s", name)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	nstest.RequireRoot(t)
	v, err := New(Options{Prefix: "vsim", Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.AddSubnet(subnetA4, subnetA6); err != nil {
		t.Fatal(err)
	}
	if err := v.LaunchPrimary(primarySpec()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := v.AddDockerLikeBridge(); err != nil {
		t.Fatal(err)
	}
	names := v.Namespaces()
	if len(names) != 4 {
		t.Fatalf("namespaces %v", names)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); err != nil {
			t.Fatalf("namespace %s missing while open: %v", n, err)
		}
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join("/run/netns", n)); !os.IsNotExist(err) {
			t.Errorf("namespace %s survives Close (%v)", n, err)
		}
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := v.ProbeIMDS(context.Background()); err == nil {
		t.Fatal("probe after Close succeeded")
	}
	if err := v.Attach(secondarySpec()); err == nil {
		t.Fatal("attach after Close succeeded")
	}
}

func TestMergePrefixes(t *testing.T) {
	got := mergePrefixes([]netip.Prefix{
		prefix("100.64.2.50/32"), prefix("100.64.2.48/28"), prefix("100.64.2.20/32"), prefix("100.64.2.20/32"),
	})
	want := []netip.Prefix{prefix("100.64.2.48/28"), prefix("100.64.2.20/32")}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v want %v", got, want)
	}
}

func TestDecodeDropKey(t *testing.T) {
	k4 := append(ifnameKey("eni1"), addr("100.64.2.20").AsSlice()...)
	k6 := append(ifnameKey("eni12"), addr("2001:db8:1:2::20").AsSlice()...)
	for _, c := range []struct {
		key        []byte
		port, addr string
		ok         bool
	}{
		{k4, "eni1", "100.64.2.20", true},
		{k6, "eni12", "2001:db8:1:2::20", true},
		{k4[:10], "", "", false},
	} {
		r, ok := decodeDropKey(c.key)
		if ok != c.ok || r.port != c.port || r.addr != c.addr {
			t.Errorf("decode %x: %+v %v", c.key, r, ok)
		}
	}
}

func TestIntervalElements(t *testing.T) {
	// .20 and .21 are adjacent: one range [.20, .22); the /28 holds .50.
	els := intervalElements([]netip.Prefix{
		prefix("100.64.2.21/32"), prefix("100.64.2.20/32"), prefix("100.64.2.48/28"), prefix("100.64.2.50/32"),
	})
	var got []string
	for _, e := range els {
		a, _ := netip.AddrFromSlice(e.Key)
		s := a.String()
		if e.IntervalEnd {
			s = "end " + s
		}
		got = append(got, s)
	}
	want := "100.64.2.20,end 100.64.2.22,100.64.2.48,end 100.64.2.64"
	if strings.Join(got, ",") != want {
		t.Fatalf("got %v want %s", got, want)
	}
	if els := intervalElements([]netip.Prefix{prefix("255.255.255.240/28")}); len(els) != 1 {
		t.Fatalf("a range to the top of the space has no end element: %v", els)
	}
}

func BenchmarkBedUpDown(b *testing.B) {
	nstest.RequireRoot(b)
	for b.Loop() {
		v, err := New(Options{Prefix: "vsimb"})
		if err != nil {
			b.Fatal(err)
		}
		if err := v.AddSubnet(subnetA4, subnetA6); err != nil {
			b.Fatal(err)
		}
		if err := v.LaunchPrimary(primarySpec()); err != nil {
			b.Fatal(err)
		}
		if err := v.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHotAttachDetach(b *testing.B) {
	nstest.RequireRoot(b)
	v, err := New(Options{Prefix: "vsimb"})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	if err := v.AddSubnet(subnetB4, subnetB6); err != nil {
		b.Fatal(err)
	}
	s := secondarySpec()
	for b.Loop() {
		if err := v.Attach(s); err != nil {
			b.Fatal(err)
		}
		if err := v.Detach(s.MAC); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkProbeTCP(b *testing.B) {
	nstest.RequireRoot(b)
	v, err := New(Options{Prefix: "vsimb"})
	if err != nil {
		b.Fatal(err)
	}
	defer v.Close()
	if err := v.AddSubnet(subnetA4, netip.Prefix{}); err != nil {
		b.Fatal(err)
	}
	s := primarySpec()
	s.SubnetIPv6, s.IPv6 = netip.Prefix{}, nil
	if err := v.LaunchPrimary(s); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := v.ProbeTCP(context.Background(), primaryV4); err != nil {
			b.Fatal(err)
		}
	}
}

func TestIPv6OnlySubnetAndNetworkCard(t *testing.T) {
	v := newBed(t)
	sub6 := prefix("2001:db8:1:3::/64")
	if err := v.AddSubnet(netip.Prefix{}, sub6); err != nil {
		t.Fatal(err)
	}
	card := 1
	s := ENISpec{Name: "eth2", MAC: "02:00:00:00:04:00", ID: "eni-4", Device: 0, Card: &card,
		SubnetIPv6: sub6, IPv6: []netip.Addr{addr("2001:db8:1:3::44")}}
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	e, ok := v.IMDS.ENI(s.MAC)
	if !ok || e.SubnetIPv4 != "" || len(e.SubnetIPv6) != 1 || e.NetworkCard == nil || *e.NetworkCard != 1 || len(e.IPv4) != 0 {
		t.Fatalf("IMDS IPv6-only ENI: %+v", e)
	}
	a := addr("2001:db8:1:3::44")
	if r := v.ProbeAddrs(fastCtx(t), a)[0]; !r.Failed() {
		t.Fatalf("%s before configuration", r)
	}
	configureByHand(t, v, "eth2", []netip.Prefix{hostPrefix(a)}, netip.Addr{}, GatewayLinkLocal, 10100)
	if r := v.ProbeAddrs(context.Background(), a)[0]; !r.OK() {
		t.Fatalf("%s: %v %v %v", r, r.OutErr, r.InErr, r.ICMPErr)
	}
	if err := v.AssignIPv4(s.MAC, addr("100.64.3.1")); err == nil {
		t.Fatal("assigned IPv4 in an IPv6-only subnet")
	}
}

func TestConfigureWithoutPolicyRoutingFails(t *testing.T) {
	v := newBed(t)
	s := secondarySpec()
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	if err := v.ConfigureWithoutPolicyRouting(s.MAC); err != nil {
		t.Fatal(err)
	}
	for _, r := range v.ProbeAddrs(fastCtx(t), append(s.IPv4, s.IPv6...)...) {
		if !r.Failed() || strings.Contains(r.OutErr.Error(), "not assigned") {
			t.Fatalf("%s: %v", r, r.OutErr)
		}
	}
	mustPassOut(t, v, primaryV4)
}
