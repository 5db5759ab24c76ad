package netconf

import (
	"strings"
	"testing"
)

func TestFreshApplyAndIdempotent(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.veth("eth1", macEth1)
	r := b.reconciler()
	s := snap(primary(), secondary())

	p, err := r.Plan(s, cfg())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) == 0 || !strings.Contains(p.String(), "+ ip -4 rule add from 100.64.2.10 lookup 10001 pref 10001 proto 236") {
		t.Fatalf("plan:\n%s", p)
	}
	if got := b.rules(); len(got) != 0 {
		t.Fatalf("Plan wrote: %v", got)
	}

	res := mustApply(t, r, s, cfg())
	if res.Writes != len(p.Changes) {
		t.Errorf("writes %d, plan had %d changes", res.Writes, len(p.Changes))
	}
	equalSets(t, "addresses", b.addrs(), []string{
		"eth0 100.64.1.10/24", // the DHCP client's, untouched
		"eth0 100.64.1.11/32 noprefixroute",
		"eth0 2001:db8:0:1::10/128 noprefixroute nodad",
		"eth1 100.64.2.10/24 noprefixroute",
		"eth1 100.64.2.11/32 noprefixroute",
		"eth1 2001:db8:0:2::10/128 noprefixroute nodad",
	})
	equalSets(t, "table 10001", b.routes(10001), []string{
		"0.0.0.0/0 via 100.64.2.1 dev eth1 scope 0 proto 236",
		"100.64.2.0/24 dev eth1 src 100.64.2.10 scope 253 proto 236",
		"2001:db8:0:2::/64 dev eth1 src 2001:db8:0:2::10 proto 236",
		"::/0 via fe80:ec2::1 dev eth1 proto 236",
	})
	equalSets(t, "rules", b.rules(), []string{
		"10001 from 100.64.2.10/32 table 10001 proto 236",
		"10001 from 100.64.2.11/32 table 10001 proto 236",
		"10001 from 100.64.2.64/28 table 10001 proto 236",
		"10001 from 2001:db8:0:2::10/128 table 10001 proto 236",
		"10001 from 2001:db8:0:2:1::/80 table 10001 proto 236",
	})
	// Main keeps exactly the DHCP client's routes: no subnet route for
	// eth1 (noprefixroute), nothing for the primary's secondary address.
	equalSets(t, "main (ipv4)", filter4(b.routes(254)), []string{
		"0.0.0.0/0 via 100.64.1.1 dev eth0 scope 0 proto 16",
		"100.64.1.0/24 dev eth0 src 100.64.1.10 scope 253 proto 2",
	})
	l, _ := b.h.LinkByName("eth1")
	if l.Attrs().Flags&1 == 0 {
		t.Error("eth1 not up")
	}
	alt := strings.Join(l.Attrs().AltNames, ",")
	if alt != "eni-00second,device-number-1" {
		t.Errorf("altnames %q", alt)
	}

	// Nothing changed: zero writes, an empty plan.
	res = mustApply(t, r, s, cfg())
	if res.Writes != 0 {
		t.Fatalf("re-apply made %d writes: %+v", res.Writes, res.ENIs)
	}
	p, _ = r.Plan(s, cfg())
	if !strings.HasPrefix(p.String(), "(no changes)") {
		t.Fatalf("plan after apply:\n%s", p)
	}
	// A fresh reconciler (new process) agrees, from the state file.
	r2 := b.reconciler()
	if res := mustApply(t, r2, s, cfg()); res.Writes != 0 {
		t.Fatalf("new reconciler made %d writes", res.Writes)
	}
}

func filter4(l []string) []string {
	var out []string
	for _, s := range l {
		if !strings.Contains(s, ":") {
			out = append(out, s)
		}
	}
	return out
}
