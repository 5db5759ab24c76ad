package plan

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func ip(s string) netip.Addr    { return netip.MustParseAddr(s) }
func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, ip(x))
	}
	return out
}

const (
	macPrimary = "02:00:00:00:00:01"
	macSecond  = "02:00:00:00:00:02"
	macThird   = "02:00:00:00:00:03"
)

func primaryENI() imds.ENI {
	return imds.ENI{MAC: macPrimary, Primary: true, InterfaceID: "eni-0primary", DeviceNumber: 0,
		SubnetIPv4: pfx("100.64.1.0/24"), SubnetIPv6: []netip.Prefix{pfx("2001:db8:0:1::/64")},
		IPv4: ips("100.64.1.10", "100.64.1.11"), IPv6: ips("2001:db8:0:1::10")}
}

func secondENI() imds.ENI {
	return imds.ENI{MAC: macSecond, InterfaceID: "eni-0second", DeviceNumber: 1,
		SubnetIPv4: pfx("100.64.2.0/24"), SubnetIPv6: []netip.Prefix{pfx("2001:db8:0:2::/64")},
		IPv4: ips("100.64.2.10", "100.64.2.11"), IPv6: ips("2001:db8:0:2::10"),
		IPv4Prefixes: []netip.Prefix{pfx("100.64.2.64/28")}, IPv6Prefixes: []netip.Prefix{pfx("2001:db8:0:2:1::/80")}}
}

var testLinks = []LinkInfo{
	{Index: 1, Name: "lo", MTU: 65536, Up: true},
	{Index: 2, Name: "eth0", MAC: macPrimary, Driver: "ena", MTU: 9001, Up: true},
	{Index: 3, Name: "eth1", MAC: macSecond, Driver: "ena", MTU: 1500},
	{Index: 4, Name: "eth2", MAC: macThird, Driver: "veth", MTU: 1500},
}

func snapOf(enis ...imds.ENI) *imds.Snapshot {
	return &imds.Snapshot{PrimaryMAC: macPrimary, ENIs: enis}
}

func TestSecondaryLayout(t *testing.T) {
	st, err := Desired(snapOf(primaryENI(), secondENI()), config.Default(), IndexLinks(testLinks))
	if err != nil {
		t.Fatal(err)
	}
	e := st.ENI(macSecond)
	if e == nil || e.Disposition != Configure || e.Table != 10001 || !e.Up || e.MTU != 9001 {
		t.Fatalf("secondary: %+v", e)
	}
	wantAddrs := []Addr{
		{Prefix: pfx("100.64.2.10/24"), NoPrefixRoute: true},
		{Prefix: pfx("100.64.2.11/32"), NoPrefixRoute: true},
		{Prefix: pfx("2001:db8:0:2::10/128"), NoPrefixRoute: true, NoDAD: true},
	}
	if !reflect.DeepEqual(e.Addrs, wantAddrs) {
		t.Errorf("addrs\n got %+v\nwant %+v", e.Addrs, wantAddrs)
	}
	wantRoutes := []Route{
		{Table: 10001, Dst: pfx("100.64.2.0/24"), Src: ip("100.64.2.10"), Scope: ScopeLink, LinkIndex: 3, Dev: "eth1"},
		{Table: 10001, Dst: pfx("0.0.0.0/0"), Gw: ip("100.64.2.1"), LinkIndex: 3, Dev: "eth1"},
		{Table: 10001, Dst: pfx("2001:db8:0:2::/64"), Src: ip("2001:db8:0:2::10"), LinkIndex: 3, Dev: "eth1"},
		{Table: 10001, Dst: pfx("::/0"), Gw: ip("fe80:ec2::1"), LinkIndex: 3, Dev: "eth1"},
	}
	if !reflect.DeepEqual(e.Routes, wantRoutes) {
		t.Errorf("routes\n got %+v\nwant %+v", e.Routes, wantRoutes)
	}
	wantRules := []Rule{
		{10001, pfx("100.64.2.10/32"), 10001},
		{10001, pfx("100.64.2.11/32"), 10001},
		{10001, pfx("100.64.2.64/28"), 10001},
		{10001, pfx("2001:db8:0:2::10/128"), 10001},
		{10001, pfx("2001:db8:0:2:1::/80"), 10001},
	}
	if !reflect.DeepEqual(e.Rules, wantRules) {
		t.Errorf("rules\n got %+v\nwant %+v", e.Rules, wantRules)
	}
	if !reflect.DeepEqual(e.AltNames, []string{"eni-0second", "device-number-1"}) {
		t.Errorf("altnames %v", e.AltNames)
	}
}

func TestPrimaryLayout(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       func(*config.Config)
		wantDisp  Disposition
		wantAddrs []Addr
		wantRoute int
	}{
		{"default", func(*config.Config) {}, Configure, []Addr{
			{Prefix: pfx("100.64.1.11/32"), NoPrefixRoute: true},
			{Prefix: pfx("2001:db8:0:1::10/128"), NoPrefixRoute: true, NoDAD: true},
		}, 0},
		{"manage-primary off", func(c *config.Config) { c.ManagePrimary = false }, Exclude, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			tc.cfg(&cfg)
			st, err := Desired(snapOf(primaryENI()), cfg, IndexLinks(testLinks))
			if err != nil {
				t.Fatal(err)
			}
			e := st.ENI(macPrimary)
			if e.Disposition != tc.wantDisp || e.Table != 0 || e.Up || e.MTU != 0 || len(e.Rules) != 0 || len(e.Routes) != tc.wantRoute {
				t.Fatalf("primary: %+v", e)
			}
			if !reflect.DeepEqual(e.Addrs, tc.wantAddrs) {
				t.Errorf("addrs %+v want %+v", e.Addrs, tc.wantAddrs)
			}
		})
	}
}

func TestDispositions(t *testing.T) {
	pending := secondENI()
	pending.State, pending.Reason, pending.DeviceNumber = imds.Pending, "device-number not propagated", 0
	unknown := secondENI()
	unknown.State = imds.Unknown

	for _, tc := range []struct {
		name   string
		enis   []imds.ENI
		cfg    func(*config.Config)
		mac    string
		want   Disposition
		reason string
	}{
		{"complete", []imds.ENI{secondENI()}, nil, macSecond, Configure, ""},
		{"pending held", []imds.ENI{pending}, nil, macSecond, Hold, "pending: device-number"},
		{"unknown held", []imds.ENI{unknown}, nil, macSecond, Hold, "unknown"},
		{"exclude by mac", []imds.ENI{secondENI()}, func(c *config.Config) { c.ExcludeMACs = []string{macSecond} }, macSecond, Exclude, "excluded"},
		{"exclude by id", []imds.ENI{secondENI()}, func(c *config.Config) { c.ExcludeENIIDs = []string{"eni-0second"} }, macSecond, Exclude, "excluded"},
		{"exclude by device", []imds.ENI{secondENI()}, func(c *config.Config) { c.ExcludeDeviceNumbers = []int{1} }, macSecond, Exclude, "excluded"},
		// A pending ENI's device number reads 0: excluding device 0 must not catch it.
		{"pending not excluded by guessed device", []imds.ENI{pending}, func(c *config.Config) { c.ExcludeDeviceNumbers = []int{0} }, macSecond, Hold, "pending"},
		{"pending excluded by mac", []imds.ENI{pending}, func(c *config.Config) { c.ExcludeMACs = []string{macSecond} }, macSecond, Exclude, "excluded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			st, err := Desired(snapOf(tc.enis...), cfg, IndexLinks(testLinks))
			if err != nil {
				t.Fatal(err)
			}
			e := st.ENI(tc.mac)
			if e.Disposition != tc.want || !strings.Contains(e.Reason, tc.reason) {
				t.Fatalf("got %v %q, want %v %q", e.Disposition, e.Reason, tc.want, tc.reason)
			}
			if e.Disposition != Configure && (len(e.Addrs)+len(e.Routes)+len(e.Rules) != 0 || e.Up || e.MTU != 0) {
				t.Fatalf("non-configured ENI wants objects: %+v", e)
			}
		})
	}
}

func TestTablesAndAltNames(t *testing.T) {
	for _, tc := range []struct {
		card, dev int
		hasCard   bool
		table     int
		alt       string
	}{
		{0, 1, false, 10001, "device-number-1"},
		{0, 1, true, 10001, "device-number-1.0"},
		{1, 0, true, 10100, "device-number-0.1"},
		{3, 15, true, 10315, "device-number-15.3"},
	} {
		e := secondENI()
		e.NetworkCard, e.DeviceNumber, e.HasNetworkCard = tc.card, tc.dev, tc.hasCard
		st, err := Desired(snapOf(e), config.Default(), IndexLinks(testLinks))
		if err != nil {
			t.Fatal(err)
		}
		d := st.ENI(macSecond)
		if d.Table != tc.table || d.Rules[0].Priority != tc.table || d.Routes[0].Table != tc.table {
			t.Errorf("card %d dev %d: table %d, want %d", tc.card, tc.dev, d.Table, tc.table)
		}
		if d.AltNames[1] != tc.alt {
			t.Errorf("card %d dev %d: altname %q, want %q", tc.card, tc.dev, d.AltNames[1], tc.alt)
		}
	}
}

func TestIPv6Only(t *testing.T) {
	for _, tc := range []struct {
		name string
		v4   []netip.Addr
		sub  netip.Prefix
	}{
		{"link-local ipv4", ips("169.254.0.10"), pfx("169.254.0.0/16")},
		{"no ipv4 subnet", ips("100.64.2.10"), netip.Prefix{}},
		{"no ipv4 at all", nil, netip.Prefix{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := secondENI()
			e.IPv4, e.SubnetIPv4, e.IPv4Prefixes = tc.v4, tc.sub, nil
			st, err := Desired(snapOf(e), config.Default(), IndexLinks(testLinks))
			if err != nil {
				t.Fatal(err)
			}
			d := st.ENI(macSecond)
			for _, a := range d.Addrs {
				if a.Prefix.Addr().Is4() {
					t.Errorf("ipv4 address planned: %v", a)
				}
			}
			for _, r := range d.Routes {
				if r.Family() == 4 {
					t.Errorf("ipv4 route planned: %+v", r)
				}
			}
			for _, r := range d.Rules {
				if r.Family() == 4 {
					t.Errorf("ipv4 rule planned: %+v", r)
				}
			}
			if len(d.Addrs) != 1 || len(d.Routes) != 2 || len(d.Rules) != 2 {
				t.Errorf("ipv6 config: %d addrs %d routes %d rules", len(d.Addrs), len(d.Routes), len(d.Rules))
			}
		})
	}
}

func TestMTUPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy string
		mac    string
		want   int
	}{
		{"auto", macSecond, 9001}, // ena
		{"auto", macThird, 0},     // veth: left alone
		{"keep", macSecond, 0},
		{"1500", macThird, 1500},
	} {
		cfg := config.Default()
		cfg.MTU = tc.policy
		e := secondENI()
		e.MAC = tc.mac
		st, err := Desired(snapOf(e), cfg, IndexLinks(testLinks))
		if err != nil {
			t.Fatal(err)
		}
		if got := st.ENI(tc.mac).MTU; got != tc.want {
			t.Errorf("mtu %s on %s: %d, want %d", tc.policy, tc.mac, got, tc.want)
		}
	}
	cfg := config.Default()
	cfg.MTU = "huge"
	if _, err := Desired(snapOf(secondENI()), cfg, IndexLinks(testLinks)); err == nil || !strings.Contains(err.Error(), "mtu") {
		t.Errorf("bad mtu accepted: %v", err)
	}
}

func TestAnyIP(t *testing.T) {
	cfg := config.Default()
	cfg.PrefixMode = config.PrefixAnyIP
	st, err := Desired(snapOf(secondENI()), cfg, IndexLinks(testLinks))
	if err != nil {
		t.Fatal(err)
	}
	var local []Route
	for _, r := range st.ENI(macSecond).Routes {
		if r.Type == Local {
			local = append(local, r)
		}
	}
	want := []Route{
		{Table: TableLocal, Type: Local, Dst: pfx("100.64.2.64/28"), Scope: ScopeHost, LinkIndex: 1, Dev: "lo"},
		{Table: TableLocal, Type: Local, Dst: pfx("2001:db8:0:2:1::/80"), Scope: ScopeHost, LinkIndex: 1, Dev: "lo"},
	}
	if !reflect.DeepEqual(local, want) {
		t.Errorf("anyip routes\n got %+v\nwant %+v", local, want)
	}
	// Rules for the prefixes stay in anyip mode.
	if n := len(st.ENI(macSecond).Rules); n != 5 {
		t.Errorf("rules %d, want 5", n)
	}
}

func TestMissingLinkStillPlanned(t *testing.T) {
	e := secondENI()
	e.MAC = "02:00:00:00:00:99"
	st, err := Desired(snapOf(e), config.Default(), IndexLinks(testLinks))
	if err != nil {
		t.Fatal(err)
	}
	d := st.ENI(e.MAC)
	if d.Link != nil || d.Disposition != Configure || d.Table != 10001 {
		t.Fatalf("%+v", d)
	}
}
