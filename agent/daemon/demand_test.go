package daemon

import (
	"testing"
	"time"
)

// Under a flood of stray packets, demand reads come at most every
// demandMin, twice as rarely after each read that found nothing, and at
// demandMin again once one finds a new address.
func TestDemandReadsAreRateLimited(t *testing.T) {
	n := uint64(0)
	fwd := false
	d := newDemand(func() (uint64, bool, error) { n += 10; return n, fwd, nil })
	t0 := time.Unix(1000, 0)
	var reads []time.Duration
	for at := time.Duration(0); at < 31*time.Second; at += demandPoll {
		if d.poll(t0.Add(at)) {
			reads = append(reads, at)
			d.readDone(false) // nothing new: a flood of junk
		}
	}
	// The first poll only learns the counter; then 0.25, 2.25, 6.25, 14.25, 30.25 s.
	want := []time.Duration{250 * time.Millisecond, 2250 * time.Millisecond, 6250 * time.Millisecond,
		14250 * time.Millisecond, 30250 * time.Millisecond}
	if len(reads) != len(want) {
		t.Fatalf("demand reads at %v, want %v", reads, want)
	}
	for i := range want {
		if reads[i] != want[i] {
			t.Fatalf("demand reads at %v, want %v", reads, want)
		}
	}
	// A read that finds an address restores the fast pace.
	d.interval = demandMax
	d.waiting = true
	d.readDone(true)
	if d.interval != demandMin {
		t.Errorf("interval %v after a useful read", d.interval)
	}
	// Forwarding: counters mean nothing, no read.
	fwd = true
	if d.poll(t0.Add(time.Hour)) || d.poll(t0.Add(2*time.Hour)) {
		t.Error("a demand read while the host forwards")
	}
}

func TestSNMPCounters(t *testing.T) {
	snmp := []byte("Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams\nIp: 2 64 1000 0 17 0\nIcmp: InMsgs\nIcmp: 3\n")
	if n, fwd := snmpStray(snmp); n != 17 || fwd {
		t.Errorf("snmp: %d %v", n, fwd)
	}
	if _, fwd := snmpStray([]byte("Ip: Forwarding InAddrErrors\nIp: 1 5\n")); !fwd {
		t.Error("forwarding not seen")
	}
	if n := snmp6Stray([]byte("Ip6InReceives     	12\nIp6InAddrErrors   	4\n")); n != 4 {
		t.Errorf("snmp6: %d", n)
	}
}
