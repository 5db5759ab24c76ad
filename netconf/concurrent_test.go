package netconf

import (
	"strings"
	"testing"
)

// Two ec2net processes in one namespace (the daemon and a manual `ec2net
// apply` or `cleanup`) share one state file. Each pass reloads it under a
// lock, so neither loses the other's records nor acts on stale ones.
func TestTwoReconcilersShareTheStateFile(t *testing.T) {
	b := newBed(t)
	b.withPrimary()
	b.veth("eth1", macEth1)
	daemon, manual := b.reconciler(), b.reconciler()

	e := secondary()
	mustApply(t, daemon, snap(primary(), e), cfg())
	// The manual process was opened before the daemon's apply: it must
	// still see those records and find nothing to do.
	if p, err := manual.Plan(snap(primary(), e), cfg()); err != nil || len(p.Changes) != 0 {
		t.Fatalf("manual plan after the daemon's apply: %v\n%s", err, p)
	}

	// A manual cleanup removes what the daemon added (it can: the records
	// are shared) ...
	if _, err := manual.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := only(b.addrs(), "eth1 "); len(got) != 0 {
		t.Fatalf("cleanup left eth1 addresses %v", got)
	}
	// ... and the daemon's next pass re-adds them and records them again,
	// instead of acting on its stale memory of the state file.
	res := mustApply(t, daemon, snap(primary(), e), cfg())
	if res.Writes == 0 {
		t.Fatalf("the daemon did not restore what cleanup removed")
	}
	st, _ := loadRecord(b.dir)
	if got := strings.Join(st.ENIs[macEth1].Addrs, " "); got != "100.64.2.10 100.64.2.11 2001:db8:0:2::10" {
		t.Errorf("state addrs after the daemon's re-apply: %q", got)
	}
	// A second manual apply adds an address; the daemon, applying the old
	// snapshot, removes it as ec2net's own (recorded by the other process).
	e2 := e
	e2.IPv4 = ips("100.64.2.10", "100.64.2.11", "100.64.2.12")
	mustApply(t, manual, snap(primary(), e2), cfg())
	mustApply(t, daemon, snap(primary(), e), cfg())
	for _, a := range only(b.addrs(), "eth1 ") {
		if strings.Contains(a, "100.64.2.12/") {
			t.Errorf("address added by the other process not recognised as ec2net's: %s", a)
		}
	}
}
