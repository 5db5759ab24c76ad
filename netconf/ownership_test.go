package netconf

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/nsutil"
)

func TestAddressAddedAndRemoved(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.veth("eth1", macEth1)
	r := b.reconciler()
	e := secondary()
	mustApply(t, r, snap(primary(), e), cfg())

	e.IPv4 = ips("100.64.2.10", "100.64.2.12") // .11 unassigned, .12 assigned
	e.IPv6 = ips("2001:db8:0:2::10", "2001:db8:0:2::12")
	res := mustApply(t, r, snap(primary(), e), cfg())
	var got []string
	for _, c := range res.ENIs[1].Applied {
		got = append(got, c.String())
	}
	equalSets(t, "changes", got, []string{
		"- ip -4 rule del from 100.64.2.11 lookup 10001 pref 10001 proto 236",
		"- ip -4 addr del 100.64.2.11/32 dev eth1",
		"+ ip -4 addr add 100.64.2.12/32 dev eth1 noprefixroute",
		"+ ip -6 addr add 2001:db8:0:2::12/128 dev eth1 noprefixroute nodad",
		"+ ip -4 rule add from 100.64.2.12 lookup 10001 pref 10001 proto 236",
		"+ ip -6 rule add from 2001:db8:0:2::12 lookup 10001 pref 10001 proto 236",
	})
	equalSets(t, "eth1 addresses", only(b.addrs(), "eth1 "), []string{
		"eth1 100.64.2.10/24 noprefixroute",
		"eth1 100.64.2.12/32 noprefixroute",
		"eth1 2001:db8:0:2::10/128 noprefixroute nodad",
		"eth1 2001:db8:0:2::12/128 noprefixroute nodad",
	})
	st, _ := loadRecord(b.dir)
	if got := strings.Join(st.ENIs[macEth1].Addrs, " "); got != "100.64.2.10 100.64.2.12 2001:db8:0:2::10 2001:db8:0:2::12" {
		t.Errorf("state addrs %q", got)
	}
	if res := mustApply(t, r, snap(primary(), e), cfg()); res.Writes != 0 {
		t.Errorf("re-apply: %d writes", res.Writes)
	}
}

func only(l []string, prefix string) []string {
	var out []string
	for _, s := range l {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func TestENIGone(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.veth("eth1", macEth1)
	r := b.reconciler()
	mustApply(t, r, snap(primary(), secondary()), cfg())

	// IMDS stops listing it while the link is still there: kept (the
	// daemon decides removal on positive evidence).
	if res := mustApply(t, r, snap(primary()), cfg()); res.Writes != 0 {
		t.Fatalf("unlisted ENI with its link touched: %d writes", res.Writes)
	}
	if n := len(b.rules()); n != 5 {
		t.Fatalf("rules after unlisting: %d", n)
	}

	// Detach: the kernel keeps the rules and drops IPv4 routes silently.
	b.ip("link", "del", "eth1")
	res := mustApply(t, r, snap(primary()), cfg())
	if res.Writes == 0 {
		t.Fatal("orphans not cleaned")
	}
	if got := b.rules(); len(got) != 0 {
		t.Errorf("orphan rules left: %v", got)
	}
	if got := b.routes(10001); len(got) != 0 {
		t.Errorf("orphan routes left: %v", got)
	}
	st, _ := loadRecord(b.dir)
	if st.ENIs[macEth1] != nil {
		t.Errorf("state still records the gone ENI: %+v", st.ENIs[macEth1])
	}
	if res := mustApply(t, r, snap(primary()), cfg()); res.Writes != 0 {
		t.Errorf("after orphan cleanup: %d writes", res.Writes)
	}
}

// TestForeignSurvive: foreign routes and rules in and around ec2net's
// ranges survive Apply and Cleanup byte for byte, and Cleanup returns the
// namespace to exactly what it was before ec2net ran.
func TestForeignSurvive(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.up(b.veth("eth1", macEth1))
	b.up(b.veth("eth9", "02:00:00:00:09:09"))
	b.ip("addr", "add", "100.127.9.9/24", "dev", "eth9")
	foreign := [][]string{
		{"route", "add", "100.127.0.0/16", "via", "100.127.9.1", "table", "10001", "proto", "static"},
		{"route", "add", "100.126.0.0/16", "dev", "eth9", "table", "10002"},
		{"rule", "add", "from", "100.127.9.12", "lookup", "10002", "pref", "9998"},
		{"rule", "add", "from", "100.127.9.9", "lookup", "10001", "pref", "10001", "proto", "static"},
		{"rule", "add", "from", "100.127.9.10", "lookup", "100", "pref", "9999"},
		{"rule", "add", "from", "100.127.9.11", "lookup", "100", "pref", "10500"},
		{"rule", "add", "fwmark", "0x1", "lookup", "10001", "pref", "10001"},
		// Identical to a desired rule but not ours: counts as satisfied.
		{"rule", "add", "from", "100.64.2.11", "lookup", "10001", "pref", "10001", "proto", "boot"},
		{"-6", "rule", "add", "from", "2001:db8:ffff::/48", "lookup", "10001", "pref", "10001"},
	}
	for _, f := range foreign {
		b.ip(f...)
	}
	before := b.dump()
	beforeRules := b.ip("rule", "show") + b.ip("-6", "rule", "show")

	r := b.reconciler()
	p, err := r.Plan(snap(primary(), secondary()), cfg())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Foreign) != 8 {
		t.Errorf("foreign reported: %d\n%s", len(p.Foreign), strings.Join(p.Foreign, "\n"))
	}
	if !strings.Contains(p.String(), "# foreign, left alone: ip -4 rule from all lookup 10001 pref 10001 proto unspec fwmark 0x1/0xffffffff") {
		t.Errorf("plan does not show the fwmark rule:\n%s", p)
	}
	mustApply(t, r, snap(primary(), secondary()), cfg())
	after := b.ip("rule", "show") + b.ip("-6", "rule", "show")
	for _, line := range strings.Split(strings.TrimSpace(beforeRules), "\n") {
		if !strings.Contains(after, line+"\n") {
			t.Errorf("foreign rule lost or changed by Apply: %q", line)
		}
	}
	for _, want := range []string{"100.127.0.0/16 via 100.127.9.1 dev eth9 table 10001 proto static", "100.126.0.0/16 dev eth9 table 10002"} {
		if !strings.Contains(b.ip("route", "show", "table", "all"), want) {
			t.Errorf("foreign route lost: %q", want)
		}
	}
	if strings.Contains(after, "from 100.64.2.11 lookup 10001 proto 236") {
		t.Error("added a duplicate of a foreign rule")
	}

	// Drop an address and an ENI-level change so Apply also deletes.
	e := secondary()
	e.IPv4 = ips("100.64.2.10")
	mustApply(t, r, snap(primary(), e), cfg())
	if _, err := r.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := b.dump(); got != before {
		t.Errorf("cleanup did not restore the namespace exactly:\nbefore:\n%s\nafter:\n%s", before, got)
	}
	st, _ := loadRecord(b.dir)
	if len(st.ENIs) != 0 {
		t.Errorf("state after cleanup: %+v", st.ENIs)
	}
}

func TestPrimaryUntouched(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	// A DHCP client already added the second address (another form).
	b.ip("addr", "add", "100.64.1.11/24", "dev", "eth0")
	mainBefore := b.ip("route", "show", "table", "main")
	r := b.reconciler()
	res := mustApply(t, r, snap(primary()), cfg())
	if res.Writes != 3 { // the IPv6 address and the two altnames
		t.Errorf("writes %d: %+v", res.Writes, res.ENIs)
	}
	if got := b.ip("route", "show", "table", "main"); got != mainBefore {
		t.Errorf("main changed:\n%s\nwas\n%s", got, mainBefore)
	}
	if got := b.rules(); len(got) != 0 {
		t.Errorf("rules for the primary: %v", got)
	}
	st, _ := loadRecord(b.dir)
	if got := strings.Join(st.ENIs[macPrimary].Addrs, " "); got != "2001:db8:0:1::10" {
		t.Errorf("state records %q (must not claim the DHCP addresses)", got)
	}
	// IMDS drops the secondary address: the DHCP client's copy stays.
	p := primary()
	p.IPv4 = ips("100.64.1.10")
	p.IPv6 = nil
	mustApply(t, r, snap(p), cfg())
	equalSets(t, "eth0", b.addrs(), []string{"eth0 100.64.1.10/24", "eth0 100.64.1.11/24"})
	if got := b.ip("route", "show", "table", "main"); got != mainBefore {
		t.Errorf("main changed:\n%s\nwas\n%s", got, mainBefore)
	}
	// manage-primary=false: ec2net removes only what it added.
	mustApply(t, r, snap(primary()), cfg())
	c := cfg()
	c.ManagePrimary = false
	mustApply(t, r, snap(primary()), c)
	equalSets(t, "eth0 unmanaged", b.addrs(), []string{"eth0 100.64.1.10/24", "eth0 100.64.1.11/24"})
}

func TestIPv6Only(t *testing.T) {
	b := newBed(t)
	b.veth("eth1", macEth1)
	r := b.reconciler()
	e := secondary()
	e.IPv4, e.SubnetIPv4, e.IPv4Prefixes = ips("169.254.0.10"), pfx("169.254.0.0/16"), nil
	mustApply(t, r, snap(e), cfg())
	equalSets(t, "addresses", b.addrs(), []string{"eth1 2001:db8:0:2::10/128 noprefixroute nodad"})
	equalSets(t, "routes", b.routes(10001), []string{
		"2001:db8:0:2::/64 dev eth1 src 2001:db8:0:2::10 proto 236",
		"::/0 via fe80:ec2::1 dev eth1 proto 236",
	})
	equalSets(t, "rules", b.rules(), []string{
		"10001 from 2001:db8:0:2::10/128 table 10001 proto 236",
		"10001 from 2001:db8:0:2:1::/80 table 10001 proto 236",
	})
}

func TestPrefixesAnyIP(t *testing.T) {
	b := newBed(t)
	b.veth("eth1", macEth1)
	r := b.reconciler()
	c := cfg()
	c.PrefixMode = config.PrefixAnyIP
	mustApply(t, r, snap(secondary()), c)
	equalSets(t, "local table (owned)", b.routes(255), []string{
		"local 100.64.2.64/28 dev lo scope 254 proto 236",
		"local 2001:db8:0:2:1::/80 dev lo proto 236",
	})
	if n := len(b.rules()); n != 5 {
		t.Errorf("rules %d", n)
	}
	if res := mustApply(t, r, snap(secondary()), c); res.Writes != 0 {
		t.Errorf("re-apply %d writes", res.Writes)
	}
	// Back to rules mode: the local routes go, the rules stay.
	res := mustApply(t, r, snap(secondary()), cfg())
	if res.Writes != 2 || len(b.routes(255)) != 0 || len(b.rules()) != 5 {
		t.Errorf("rules mode: %d writes, local %v, %d rules", res.Writes, b.routes(255), len(b.rules()))
	}
}

func TestMultiCard(t *testing.T) {
	b := newBed(t)
	b.veth("eth1", macEth1)
	b.veth("eth2", macEth2)
	r := b.reconciler()
	e1 := secondary()
	e1.NetworkCard, e1.DeviceNumber, e1.HasNetworkCard = 1, 0, true
	e2 := secondary()
	e2.MAC, e2.InterfaceID = macEth2, "eni-00third"
	e2.NetworkCard, e2.DeviceNumber, e2.HasNetworkCard = 1, 2, true
	e2.SubnetIPv4, e2.IPv4, e2.IPv4Prefixes = pfx("100.64.3.0/24"), ips("100.64.3.10"), nil
	e2.SubnetIPv6, e2.IPv6, e2.IPv6Prefixes = nil, nil, nil
	mustApply(t, r, snap(e1, e2), cfg())
	if got := b.routes(10100); len(got) != 4 {
		t.Errorf("table 10100: %v", got)
	}
	equalSets(t, "table 10102", b.routes(10102), []string{
		"0.0.0.0/0 via 100.64.3.1 dev eth2 scope 0 proto 236",
		"100.64.3.0/24 dev eth2 src 100.64.3.10 scope 253 proto 236",
	})
	rules := strings.Join(b.rules(), "\n")
	if !strings.Contains(rules, "10100 from 100.64.2.10/32 table 10100 proto 236") ||
		!strings.Contains(rules, "10102 from 100.64.3.10/32 table 10102 proto 236") {
		t.Errorf("rules:\n%s", rules)
	}
	l, _ := b.h.LinkByName("eth2")
	if got := strings.Join(l.Attrs().AltNames, ","); got != "eni-00third,device-number-2.1" {
		t.Errorf("altnames %q", got)
	}
}

func TestExcluded(t *testing.T) {
	b := newBed(t)
	b.veth("eth1", macEth1)
	r := b.reconciler()
	mustApply(t, r, snap(secondary()), cfg())
	b.ip("rule", "add", "from", "100.64.2.99", "lookup", "10001", "pref", "10001")
	b.ip("addr", "add", "100.64.2.99/32", "dev", "eth1")
	c := cfg()
	c.ExcludeENIIDs = []string{"eni-00second"}
	mustApply(t, r, snap(secondary()), c)
	equalSets(t, "rules", b.rules(), []string{"10001 from 100.64.2.99/32 table 10001 proto 0"})
	equalSets(t, "addresses", b.addrs(), []string{"eth1 100.64.2.99/32"})
	if got := b.routes(10001); len(got) != 0 {
		t.Errorf("routes left: %v", got)
	}
	if res := mustApply(t, r, snap(secondary()), c); res.Writes != 0 {
		t.Errorf("re-apply %d writes", res.Writes)
	}
}

func TestHeldKeepsConfig(t *testing.T) {
	b := newBed(t)
	b.veth("eth1", macEth1)
	r := b.reconciler()
	mustApply(t, r, snap(secondary()), cfg())
	before := b.dump()
	for _, st := range []imds.ENIState{imds.Pending, imds.Invalid, imds.Unknown} {
		e := imds.ENI{MAC: macEth1, State: st, Reason: "test"} // nothing known
		res := mustApply(t, r, snap(e), cfg())
		if res.Writes != 0 {
			t.Errorf("%v: %d writes", st, res.Writes)
		}
	}
	if got := b.dump(); got != before {
		t.Errorf("held ENI changed:\n%s\nwas\n%s", got, before)
	}
	stt, _ := loadRecord(b.dir)
	if stt.ENIs[macEth1] == nil || len(stt.ENIs[macEth1].Addrs) != 3 {
		t.Errorf("state lost while held: %+v", stt.ENIs[macEth1])
	}
	// A new, pending ENI whose table is unknown next to an orphaned owned
	// rule with no record: kept while it might be the pending ENI's.
	b.ip("rule", "add", "from", "100.64.7.7", "lookup", "10007", "pref", "10007", "proto", "236")
	b.veth("eth2", macEth2)
	res := mustApply(t, r, snap(secondary(), imds.ENI{MAC: macEth2, State: imds.Pending}), cfg())
	if res.Writes != 0 {
		t.Errorf("unattributed rule removed while a pending ENI is unknown: %+v", res.ENIs)
	}
	res = mustApply(t, r, snap(secondary()), cfg())
	if res.Writes != 1 {
		t.Errorf("unattributed owned rule not removed: %d writes", res.Writes)
	}
}

func TestErrorIsolation(t *testing.T) {
	b := newBed(t)
	b.veth("eth1", macEth1)
	b.veth("eth2", macEth2)
	// A foreign default route in eth2's table blocks ec2net's.
	b.up(b.veth("eth9", "02:00:00:00:09:09"))
	b.ip("addr", "add", "100.127.9.9/24", "dev", "eth9")
	b.ip("route", "add", "default", "via", "100.127.9.1", "table", "10002", "proto", "static")
	// Another link already carries eth2's ENI id as an altname.
	b.ip("link", "property", "add", "dev", "eth9", "altname", "eni-00third")
	r := b.reconciler()
	e2 := secondary()
	e2.MAC, e2.InterfaceID, e2.DeviceNumber = macEth2, "eni-00third", 2
	e2.SubnetIPv4, e2.IPv4, e2.IPv4Prefixes = pfx("100.64.3.0/24"), ips("100.64.3.10"), nil
	e2.IPv6, e2.SubnetIPv6, e2.IPv6Prefixes = nil, nil, nil
	missing := secondary()
	missing.MAC, missing.InterfaceID, missing.DeviceNumber = macEth3, "eni-00gone", 3
	res, err := r.Apply(snap(secondary(), e2, missing), cfg())
	if err != nil {
		t.Fatal(err)
	}
	byMAC := map[string]ENIResult{}
	for _, e := range res.ENIs {
		byMAC[e.MAC] = e
	}
	if e := byMAC[macEth1]; len(e.Failed) != 0 || len(e.Applied) == 0 {
		t.Errorf("eth1: %+v", e)
	}
	if e := byMAC[macEth3]; len(e.Failed) != 1 || !errors.Is(e.Failed[0].Err, ErrNoLink) {
		t.Errorf("missing link not reported: %+v", e)
	}
	e := byMAC[macEth2]
	var foreign, alt bool
	for _, f := range e.Failed {
		foreign = foreign || errors.Is(f.Err, ErrForeignInTheWay)
		alt = alt || (f.Change.Kind == KindLink && strings.Contains(f.Change.Text(), "altname eni-00third"))
	}
	if !foreign || !alt || len(e.Failed) != 2 {
		t.Errorf("eth2 failures: %v", e.Failed)
	}
	// The plan lists the blocking route once, as ip(8) prints it.
	p, err := r.Plan(snap(secondary(), e2, missing), cfg())
	if err != nil {
		t.Fatal(err)
	}
	blocking := "ip -4 route default via 100.127.9.1 dev eth9 table 10002 proto static"
	if text := p.String(); strings.Count(text, blocking) != 1 || strings.Contains(text, "  ") {
		t.Errorf("plan should name the foreign route once (%q):\n%s", blocking, text)
	}
	// Everything else of eth2 was applied.
	equalSets(t, "rules", only(b.rules(), "10002"), []string{"10002 from 100.64.3.10/32 table 10002 proto 236"})
	if !strings.Contains(b.ip("route", "show", "table", "10002"), "default via 100.127.9.1 dev eth9 proto static") {
		t.Error("foreign route touched")
	}
	st, err := r.Status(snap(secondary(), e2, missing), cfg())
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, s := range st {
		states[s.MAC] = s.State.String()
	}
	// The foreign route in eth2's table is where its traffic goes: a
	// broken path, not drift.
	if states[macEth1] != "configured" || states[macEth2] != "wrong-path" || states[macEth3] != "absent" {
		t.Errorf("status: %v", states)
	}
}

func TestStateFileAtomicAndPrivate(t *testing.T) {
	b := newBed(t)
	b.veth("eth1", macEth1)
	dir := filepath.Join(b.dir, "netns-x")
	r, err := New(Options{NetNS: b.ns, StateDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	mustApply(t, r, snap(secondary()), cfg())
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v %v", fi.Mode(), err)
	}
	// The state file and the lock, no temporary files left behind.
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 || ents[0].Name() != "lock" || ents[1].Name() != recordFileName {
		t.Errorf("state dir holds %v", ents)
	}
	st, err := loadRecord(dir)
	if err != nil || st.ENIs[macEth1].Table != 10001 || st.ENIs[macEth1].ENIID != "eni-00second" {
		t.Errorf("state: %+v %v", st.ENIs[macEth1], err)
	}
}

func TestStatus(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.ip("-6", "route", "add", "default", "via", "fe80:ec2::1", "dev", "eth0") // as the VPC's router advertisements add it
	b.veth("eth1", macEth1)
	r := b.reconciler()
	s := snap(primary(), secondary())
	st, err := r.Status(s, cfg())
	if err != nil {
		t.Fatal(err)
	}
	if st[1].State != StateDrift || st[1].RulesWanted != 5 || st[1].RulesPresent != 0 {
		t.Errorf("before apply: %+v", st[1])
	}
	mustApply(t, r, s, cfg())
	st, _ = r.Status(s, cfg())
	if st[1].State != StateConfigured || st[1].RulesPresent != 5 || st[1].Table != 10001 || st[1].Link != "eth1" {
		t.Errorf("after apply: %+v", st[1])
	}
	want := []netip.Addr{netip.MustParseAddr("100.64.2.10"), netip.MustParseAddr("100.64.2.11"), netip.MustParseAddr("2001:db8:0:2::10")}
	if len(st[1].LinkAddrs) != 3 || len(st[1].IMDSAddrs) != 3 || st[1].IMDSAddrs[2] != want[2] {
		t.Errorf("addrs: %+v", st[1])
	}
	if st[0].State != StateConfigured || !st[0].Primary {
		t.Errorf("primary: %+v", st[0])
	}
}

// TestDetachedWhileListed: IMDS may list a detached ENI for a while; its
// link being gone is evidence enough to remove its orphaned rules and
// routes, while the ENI itself is reported as having no link.
func TestDetachedWhileListed(t *testing.T) {
	b := newBed(t)
	b.veth("eth1", macEth1)
	r := b.reconciler()
	mustApply(t, r, snap(secondary()), cfg())
	b.ip("link", "del", "eth1")
	res, err := r.Apply(snap(secondary()), cfg())
	if err != nil {
		t.Fatal(err)
	}
	if f := res.Failed(); len(f) != 1 || !errors.Is(f[0].Err, ErrNoLink) {
		t.Errorf("failures: %v", f)
	}
	if got := b.rules(); len(got) != 0 {
		t.Errorf("orphan rules left: %v", got)
	}
	if got := b.routes(10001); len(got) != 0 {
		t.Errorf("orphan routes left: %v", got)
	}
	if res, _ := r.Apply(snap(secondary()), cfg()); res.Writes != 0 {
		t.Errorf("second pass: %d writes", res.Writes)
	}
}

// A crash between the write-ahead record and the kernel writes leaves
// intents: an intended address found on its link is ec2net's (the pass
// that intended it had seen it absent) and goes when IMDS no longer lists
// it; one not on the link is simply dropped. As on a kernel without
// address marks, where the record is all there is.
func TestIntentOfACrashedPass(t *testing.T) {
	t.Setenv("EC2NET_TEST_NO_ADDR_PROTO", "1")
	b := newBed(t)
	b.withPrimary()
	b.up(b.veth("eth1", macEth1))
	b.ip("addr", "add", "100.64.2.99/32", "dev", "eth1", "noprefixroute") // written before the crash
	rec := `{"version": 1, "enis": {"` + macEth1 + `": {"table": 10001, "intent": ["100.64.2.98", "100.64.2.99"]}}}`
	if err := os.WriteFile(filepath.Join(b.dir, recordFileName), []byte(rec), 0o600); err != nil {
		t.Fatal(err)
	}
	r := b.reconciler()
	mustApply(t, r, snap(primary(), secondary()), cfg())
	if got := only(b.addrs(), "eth1 100.64.2.99"); len(got) != 0 {
		t.Errorf("the crashed pass's address, no longer listed, was kept: %v", got)
	}
	st, _ := loadRecord(b.dir)
	if re := st.ENIs[macEth1]; re == nil || len(re.Intent) != 0 || slices.Contains(re.Addrs, "100.64.2.98") {
		t.Errorf("intents not settled: %+v", re)
	}
}

// A corrupt record removes nothing foreign; with address marks, what
// ec2net added is still found and removed when unassigned.
func TestCorruptRecordWithAddressMarks(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.up(b.veth("eth1", macEth1))
	b.ip("addr", "add", "100.64.2.250/32", "dev", "eth1") // foreign
	r := b.reconciler()
	mustApply(t, r, snap(primary(), secondary()), cfg())
	if err := os.WriteFile(filepath.Join(b.dir, recordFileName), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := secondary()
	e.IPv4 = ips("100.64.2.10") // .11 unassigned
	mustApply(t, r, snap(primary(), e), cfg())
	got := only(b.addrs(), "eth1 100.64.2.")
	equalSets(t, "eth1 IPv4 after the corrupt record", got, []string{"eth1 100.64.2.10/24 noprefixroute", "eth1 100.64.2.250/32"})
}

// A link ec2net brought up and an administrator set down stays down;
// its addresses and rules are repaired meanwhile, its routes come back
// with the link.
func TestAdministratorsLinkDownIsRespected(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.veth("eth1", macEth1)
	r := b.reconciler()
	s := snap(primary(), secondary())
	mustApply(t, r, s, cfg())
	b.ip("link", "set", "eth1", "down")
	b.ip("addr", "flush", "dev", "eth1") // as ifdown does
	res := mustApply(t, r, s, cfg())
	for _, c := range res.ENIs[1].Applied {
		if c.Kind == KindLink && c.LinkSet.Up {
			t.Fatalf("ec2net set the link up again: %v", c)
		}
	}
	if !res.ENIs[1].AdminDown || !strings.Contains(b.ip("link", "show", "eth1"), "state DOWN") {
		t.Fatalf("link not left down: %+v", res.ENIs[1])
	}
	if got := only(b.addrs(), "eth1 "); len(got) != 3 {
		t.Errorf("addresses not repaired while down: %v", got)
	}
	if st, _ := r.Status(s, cfg()); st[1].State != StateDown {
		t.Errorf("status: %v %q, want down", st[1].State, st[1].Reason)
	}
	b.ip("link", "set", "eth1", "up")
	mustApply(t, r, s, cfg())
	if got := b.routes(10001); len(got) != 4 {
		t.Errorf("routes not back with the link: %v", got)
	}
}

// A record written before BroughtUp was a link index says
// "brought_up": true. It still reads (the record is not lost), a link
// down then is still respected, and once the link is up the record
// learns its index.
func TestRecordWithBroughtUpTrueFromAnOlderVersion(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.veth("eth1", macEth1)
	r := b.reconciler()
	s := snap(primary(), secondary())
	mustApply(t, r, s, cfg())
	path := filepath.Join(b.dir, recordFileName)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	legacy := regexp.MustCompile(`"brought_up": [0-9]+`).ReplaceAll(old, []byte(`"brought_up": true`))
	if bytes.Equal(legacy, old) {
		t.Fatalf("no brought_up in the record:\n%s", old)
	}
	if err := os.WriteFile(path, legacy, 0o600); err != nil {
		t.Fatal(err)
	}
	b.ip("link", "set", "eth1", "down")
	res := mustApply(t, r, s, cfg())
	if err := r.RecordError(); err != nil {
		t.Fatalf("the older record does not read: %v", err)
	}
	if !res.ENIs[1].AdminDown || !strings.Contains(b.ip("link", "show", "eth1"), "state DOWN") {
		t.Fatalf("link not left down under the older record: %+v", res.ENIs[1])
	}
	b.ip("link", "set", "eth1", "up")
	mustApply(t, r, s, cfg())
	now, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`"brought_up": [1-9][0-9]*`).Match(now) {
		t.Errorf("the record did not learn the link's index:\n%s", now)
	}
}

// Secondary ENIs take no router advertisements (a default learned from
// them in main would draw the primary's IPv6 traffic); the primary keeps
// whatever its DHCP client set.
func TestSecondaryENIsIgnoreRouterAdvertisements(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.veth("eth1", macEth1)
	r := b.reconciler()
	ra := func(link string) string {
		var out []byte
		if err := nsutil.Do(b.ns, func() (err error) {
			out, err = os.ReadFile("/proc/sys/net/ipv6/conf/" + link + "/accept_ra")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	before := ra("eth0")
	res := mustApply(t, r, snap(primary(), secondary()), cfg())
	if got := ra("eth1"); got != "0" {
		t.Errorf("eth1 accept_ra %s, want 0", got)
	}
	if got := ra("eth0"); got != before {
		t.Errorf("the primary's accept_ra changed: %s -> %s", before, got)
	}
	found := false
	for _, c := range res.ENIs[1].Applied {
		found = found || c.Text() == "sysctl net.ipv6.conf.eth1.accept_ra=0"
	}
	if !found {
		t.Errorf("the sysctl change is not reported: %v", res.ENIs[1].Applied)
	}
	if res := mustApply(t, r, snap(primary(), secondary()), cfg()); res.Writes != 0 {
		t.Errorf("re-apply: %d writes", res.Writes)
	}
}
