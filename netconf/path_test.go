package netconf

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/vpcsim"
)

// pathBed is a simulated instance configured by ec2net: eth0 (primary),
// eth1 in another subnet (dual-stack), eth2 in the primary's subnet.
type pathBed struct {
	t    *testing.T
	v    *vpcsim.VPC
	r    *Reconciler
	snap *imds.Snapshot
	cfg  config.Config
}

func newPathBed(t *testing.T, prefix string) *pathBed { return newPathBedWith(t, prefix, cfg(), nil) }

// newPathBedWith is newPathBed with a configuration and a change to the
// ENIs' specifications before they are attached.
func newPathBedWith(t *testing.T, prefix string, c config.Config, change func([]vpcsim.ENISpec)) *pathBed {
	v := vpcsim.NewForTestOptions(t, vpcsim.Options{Prefix: prefix, NoDAD: true})
	subA4, subA6 := pfx("100.64.1.0/24"), pfx("2001:db8:1:1::/64")
	subB4, subB6 := pfx("100.64.2.0/24"), pfx("2001:db8:1:2::/64")
	for _, s := range [][2]netip.Prefix{{subA4, subA6}, {subB4, subB6}} {
		if err := v.AddSubnet(s[0], s[1]); err != nil {
			t.Fatal(err)
		}
	}
	specs := []vpcsim.ENISpec{
		{Name: "eth0", MAC: "02:00:00:00:b1:00", ID: "eni-00b0", Device: 0, SubnetIPv4: subA4, SubnetIPv6: subA6,
			IPv4: ips("100.64.1.10", "100.64.1.11"), IPv6: ips("2001:db8:1:1::10")},
		{Name: "eth1", MAC: "02:00:00:00:b1:01", ID: "eni-00b1", Device: 1, SubnetIPv4: subB4, SubnetIPv6: subB6,
			IPv4: ips("100.64.2.20", "100.64.2.21", "100.64.2.22"), IPv6: ips("2001:db8:1:2::20")},
		{Name: "eth2", MAC: "02:00:00:00:b1:02", ID: "eni-00b2", Device: 2, SubnetIPv4: subA4,
			IPv4: ips("100.64.1.30", "100.64.1.31")},
	}
	if change != nil {
		change(specs)
	}
	s := launchSpecs(t, v, specs)
	ns, err := v.Handle(v.Instance)
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{NetNS: ns, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	b := &pathBed{t: t, v: v, r: r, snap: s, cfg: c}
	mustApply(t, r, s, c)
	return b
}

func (b *pathBed) ip(args ...string) {
	b.t.Helper()
	if out, err := b.v.Exec(b.v.Instance, append([]string{"ip"}, args...)...); err != nil {
		b.t.Fatalf("ip %v: %v\n%s", args, err, out)
	}
}

// status returns the rows by link name and every address by IP.
func (b *pathBed) status() (map[string]ENIStatus, map[netip.Addr]AddrStatus) {
	b.t.Helper()
	rows, err := b.r.Status(b.snap, b.cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	byLink, byAddr := map[string]ENIStatus{}, map[netip.Addr]AddrStatus{}
	for _, r := range rows {
		byLink[r.Link] = r
		for _, a := range r.Addrs {
			byAddr[a.Address] = a
			if a.State != StateConfigured {
				b.t.Logf("%s %s: %s: %s (path: %s)", r.Link, a.Address, a.State, a.Cause, a.Path)
			}
		}
	}
	return byLink, byAddr
}

// traffic reports whether TCP from (and to) a passes the VPC router.
func (b *pathBed) traffic(a netip.Addr, inbound bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var err error
	if inbound {
		_, err = b.v.ProbeInbound(ctx, a)
	} else {
		_, err = b.v.ProbeTCP(ctx, a)
	}
	return err == nil
}

func (b *pathBed) allConfigured(when string) {
	b.t.Helper()
	rows, addrs := b.status()
	for _, r := range rows {
		if r.State != StateConfigured {
			b.t.Errorf("%s: %s is %s (%s)", when, r.Link, r.State, r.Reason)
		}
	}
	// Every address of every ENI, the primary's DHCP address included.
	if len(addrs) != 9 {
		b.t.Errorf("%s: %d addresses verified, want 9: %+v", when, len(addrs), addrs)
	}
	for a, s := range addrs {
		if s.State != StateConfigured || s.Cause != "" || s.Path == "" {
			b.t.Errorf("%s: %s %+v", when, a, s)
		}
	}
}

// A foreign rule of higher priority shadows one address: status says so
// and names the rule, the address's traffic really fails, the others
// still pass; with the rule gone, everything is configured again.
func TestPathShadowedByForeignRule(t *testing.T) {
	b := newPathBed(t, "pathsh")
	b.allConfigured("after apply")
	victim, bystander := netip.MustParseAddr("100.64.2.21"), netip.MustParseAddr("100.64.2.20")
	b.ip("rule", "add", "from", victim.String(), "lookup", "main", "pref", "100")
	rows, addrs := b.status()
	a := addrs[victim]
	if a.State != StateShadowed || !strings.Contains(a.Cause, "from 100.64.2.21 lookup main pref 100") || !strings.Contains(a.Path, "dev eth0") {
		t.Errorf("shadowed address: %+v", a)
	}
	if r := rows["eth1"]; r.State != StateShadowed || r.State.Healthy() || !strings.Contains(r.Reason, "100.64.2.21") {
		t.Errorf("eth1 row: %s (%s)", r.State, r.Reason)
	}
	if s := addrs[bystander]; s.State != StateConfigured {
		t.Errorf("bystander %+v", s)
	}
	if b.traffic(victim, false) {
		t.Errorf("traffic from the shadowed %s passed: the simulator does not show the failure status reports", victim)
	}
	if !b.traffic(bystander, false) {
		t.Errorf("traffic from %s failed", bystander)
	}
	b.ip("rule", "del", "from", victim.String(), "lookup", "main", "pref", "100")
	b.allConfigured("after the rule is removed")
	if !b.traffic(victim, false) {
		t.Errorf("traffic from %s fails after the rule is removed", victim)
	}
}

// A foreign default route in an ENI's table: the ENI's addresses leave
// through eth0 and are dropped; status names the route.
func TestPathWrongPathForeignDefaultInTable(t *testing.T) {
	b := newPathBed(t, "pathwp")
	b.ip("route", "replace", "default", "via", "100.64.1.1", "dev", "eth0", "table", "10002", "proto", "static")
	rows, addrs := b.status()
	a := addrs[netip.MustParseAddr("100.64.1.30")]
	if a.State != StateWrongPath || !strings.Contains(a.Cause, "default via 100.64.1.1 dev eth0 table 10002 proto static") {
		t.Errorf("address of eth2: %+v", a)
	}
	if r := rows["eth2"]; r.State != StateWrongPath {
		t.Errorf("eth2 row: %s (%s)", r.State, r.Reason)
	}
	if b.traffic(netip.MustParseAddr("100.64.1.30"), false) {
		t.Errorf("traffic through the foreign default passed")
	}
	if r := rows["eth1"]; r.State != StateConfigured {
		t.Errorf("eth1 row: %s (%s)", r.State, r.Reason)
	}
}

// A link an administrator set down after ec2net brought it up: ec2net
// leaves it down, and every address of the ENI is off its path.
func TestPathLinkDown(t *testing.T) {
	b := newPathBed(t, "pathld")
	b.ip("link", "set", "eth2", "down")
	rows, addrs := b.status()
	if r := rows["eth2"]; r.State != StateDown || r.State.Healthy() {
		t.Errorf("eth2 row: %s (%s)", r.State, r.Reason)
	}
	for _, ip := range []string{"100.64.1.30", "100.64.1.31"} {
		if s := addrs[netip.MustParseAddr(ip)]; s.State != StateDown || !strings.Contains(s.Cause, "eth2 is administratively down") {
			t.Errorf("%s: %+v", ip, s)
		}
	}
	if b.traffic(netip.MustParseAddr("100.64.1.30"), false) {
		t.Errorf("traffic from an address of the down link passed")
	}
}

// Strict rp_filter with a misrouted reply: what arrives for the address
// is dropped on arrival (real inbound traffic fails), and status says
// rp-filter, with the rule that misroutes the reply.
func TestPathReversePathFilter(t *testing.T) {
	b := newPathBed(t, "pathrp")
	victim := netip.MustParseAddr("100.64.2.22")
	for _, k := range []string{"all", "eth1"} {
		if err := b.v.Sysctl(b.v.Instance, "net.ipv4.conf."+k+".rp_filter", "1"); err != nil {
			t.Fatal(err)
		}
	}
	b.allConfigured("strict rp_filter, correct paths")
	if !b.traffic(victim, true) {
		t.Fatalf("inbound to %s fails under strict rp_filter with correct paths", victim)
	}
	b.ip("rule", "add", "from", victim.String(), "lookup", "main", "pref", "200")
	rows, addrs := b.status()
	a := addrs[victim]
	if a.State != StateRPFilter || !strings.Contains(a.Cause, "rp_filter") || !strings.Contains(a.Cause, "pref 200") {
		t.Errorf("address under rp_filter: %+v", a)
	}
	if r := rows["eth1"]; r.State != StateRPFilter {
		t.Errorf("eth1 row: %s (%s)", r.State, r.Reason)
	}
	if b.traffic(victim, true) {
		t.Errorf("inbound to %s passed although rp_filter should drop it", victim)
	}
}

// ec2net's own rule missing (someone deleted it; the daemon repairs it):
// drift, not a path someone else broke.
func TestPathMissingOwnRuleIsDrift(t *testing.T) {
	b := newPathBed(t, "pathdr")
	b.ip("rule", "del", "from", "100.64.2.20", "lookup", "10001", "pref", "10001")
	rows, addrs := b.status()
	if a := addrs[netip.MustParseAddr("100.64.2.20")]; a.State != StateDrift || !strings.Contains(a.Cause, "apply restores") {
		t.Errorf("address without its rule: %+v", a)
	}
	if r := rows["eth1"]; r.State != StateDrift {
		t.Errorf("eth1 row: %s (%s)", r.State, r.Reason)
	}
	mustApply(t, b.r, b.snap, cfg())
	b.allConfigured("after apply")
}

// A default route through a secondary ENI in main (what a network
// manager matching every ENI adds): the primary's own addresses leave
// through eth1 and are dropped; status says wrong-path on the primary.
func TestPathPrimaryThroughSecondary(t *testing.T) {
	b := newPathBed(t, "pathpr")
	b.ip("route", "replace", "default", "via", "100.64.2.1", "dev", "eth1", "onlink", "proto", "dhcp")
	rows, addrs := b.status()
	for _, ip := range []string{"100.64.1.10", "100.64.1.11"} {
		a := addrs[netip.MustParseAddr(ip)]
		if a.State != StateWrongPath || !strings.Contains(a.Cause, "default via 100.64.2.1 dev eth1 table main proto dhcp") {
			t.Errorf("primary address %s: %+v", ip, a)
		}
	}
	if r := rows["eth0"]; r.State != StateWrongPath {
		t.Errorf("eth0 row: %s (%s)", r.State, r.Reason)
	}
	if b.traffic(netip.MustParseAddr("100.64.1.10"), false) {
		t.Errorf("the primary's traffic through eth1 passed")
	}
	if r := rows["eth1"]; r.State != StateConfigured {
		t.Errorf("eth1 row: %s (%s)", r.State, r.Reason)
	}
}

// Delegated prefixes are path-checked too, each through one of its
// addresses (its "from" rule decides for all of them): in anyip mode,
// where the prefixes' addresses are the host's, IPv4 and IPv6 alike. A
// foreign rule shadowing a prefix makes it, and its ENI, shadowed, and
// traffic from the prefix really fails; without the rule it flows. In
// rules mode only the IPv6 prefix can be looked up (an IPv4 lookup needs
// a local source).
func TestPathDelegatedPrefixes(t *testing.T) {
	p4, p6 := pfx("100.64.2.64/28"), pfx("2001:db8:1:2:1::/80")
	withPrefixes := func(specs []vpcsim.ENISpec) {
		specs[1].IPv4Prefixes, specs[1].IPv6Prefixes = []netip.Prefix{p4}, []netip.Prefix{p6}
	}
	anyIP := cfg()
	anyIP.PrefixMode = config.PrefixAnyIP
	b := newPathBedWith(t, "pathpf", anyIP, withPrefixes)
	rep4, rep6 := netip.MustParseAddr("100.64.2.65"), netip.MustParseAddr("2001:db8:1:2:1::1")
	rows, addrs := b.status()
	for _, a := range []netip.Addr{rep4, rep6} {
		s, ok := addrs[a]
		if !ok || s.State != StateConfigured || !s.Prefix.IsValid() || !strings.Contains(s.Path, "dev eth1") {
			t.Errorf("prefix checked through %s: %+v (%v)", a, s, ok)
		}
		if _, err := b.v.ProbeTCP(context.Background(), a); err != nil {
			t.Errorf("traffic from %s (a delegated prefix's) fails while status says configured: %v", a, err)
		}
	}
	if r := rows["eth1"]; r.State != StateConfigured {
		t.Errorf("eth1 %s (%s)", r.State, r.Reason)
	}

	b.ip("rule", "add", "from", p4.String(), "lookup", "main", "pref", "100")
	rows, addrs = b.status()
	if s := addrs[rep4]; s.State != StateShadowed || s.Prefix != p4 || !strings.Contains(s.Cause, "from "+p4.String()+" lookup main pref 100") {
		t.Errorf("shadowed prefix: %+v", s)
	}
	if r := rows["eth1"]; r.State != StateShadowed {
		t.Errorf("eth1 with a shadowed prefix: %s (%s)", r.State, r.Reason)
	}
	if s := addrs[rep6]; s.State != StateConfigured {
		t.Errorf("the IPv6 prefix, not shadowed: %+v", s)
	}
	if b.traffic(rep4, false) {
		t.Errorf("traffic from the shadowed prefix passed: the simulator does not show what status reports")
	}
	if !b.traffic(rep6, false) {
		t.Errorf("traffic from the IPv6 prefix, not shadowed, fails")
	}
	b.ip("rule", "del", "from", p4.String(), "lookup", "main", "pref", "100")
	if _, addrs = b.status(); addrs[rep4].State != StateConfigured {
		t.Errorf("after the rule is removed: %+v", addrs[rep4])
	}
	b.ip("-6", "rule", "add", "from", p6.String(), "lookup", "main", "pref", "100")
	if _, addrs = b.status(); addrs[rep6].State != StateShadowed || addrs[rep6].Prefix != p6 {
		t.Errorf("shadowed IPv6 prefix: %+v", addrs[rep6])
	}
	if b.traffic(rep6, false) {
		t.Errorf("traffic from the shadowed IPv6 prefix passed")
	}
	b.ip("-6", "rule", "del", "from", p6.String(), "lookup", "main", "pref", "100")

	// Rules mode: the IPv6 prefix is still checked, the IPv4 one is not.
	b.cfg = cfg()
	mustApply(t, b.r, b.snap, b.cfg)
	_, addrs = b.status()
	if s, ok := addrs[rep6]; !ok || s.State != StateConfigured {
		t.Errorf("rules mode, IPv6 prefix: %+v (%v)", s, ok)
	}
	if s, ok := addrs[rep4]; ok {
		t.Errorf("rules mode, IPv4 prefix looked up from a source that is not local: %+v", s)
	}
}
