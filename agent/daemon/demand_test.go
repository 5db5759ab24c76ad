package daemon

import (
	"net/netip"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
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
	if n := snmp6Stray([]byte("Ip6InReceives     	12\nIp6InAddrErrors   	4\nIp6InNoRoutes    	3\n")); n != 7 {
		t.Errorf("snmp6: %d, want InAddrErrors + InNoRoutes = 7", n)
	}
}

// A rise within the hold-off after a demand read (a second address
// assigned a second after the first) is read as soon as the hold-off
// ends, without waiting for another rise; what rose while a read that
// found an address was under way is not read again.
func TestDemandRiseInHoldOffIsReadWhenItEnds(t *testing.T) {
	n := uint64(0)
	d := newDemand(func() (uint64, bool, error) { return n, false, nil })
	t0 := time.Unix(1000, 0)
	d.poll(t0) // learns the counter
	n++        // the first address's SYN
	if !d.poll(t0.Add(demandPoll)) {
		t.Fatal("no read on the first rise")
	}
	n++ // its retransmission, while the read is under way
	d.poll(t0.Add(2 * demandPoll))
	d.readDone(true)
	n++ // the second address's SYN, a second after the first, within the hold-off
	at := demandPoll + time.Second
	if d.poll(t0.Add(at)) {
		t.Fatal("read within the hold-off")
	}
	for at += demandPoll; at <= 2*demandMin; at += demandPoll {
		if d.poll(t0.Add(at)) {
			break
		}
	}
	if want := demandPoll + demandMin; at != want {
		t.Errorf("the rise within the hold-off was read at %v, want %v (when the hold-off ends)", at, want)
	}
	// Had the second SYN not come, the retransmission's rise during the
	// read would have caused no read.
	n2 := uint64(0)
	d2 := newDemand(func() (uint64, bool, error) { return n2, false, nil })
	d2.poll(t0)
	n2++
	d2.poll(t0.Add(demandPoll))
	n2++
	d2.poll(t0.Add(2 * demandPoll))
	d2.readDone(true)
	for at := 3 * demandPoll; at <= 3*demandMin; at += demandPoll {
		if d2.poll(t0.Add(at)) {
			t.Fatalf("read at %v for packets that rose during a read that found an address", at)
		}
	}
}

// A demand read that finds a new delegated prefix found something new
// (a stray packet can be for a prefix's address), as a new address does.
func TestNewAddressesCountsPrefixes(t *testing.T) {
	mac := "02:ec:20:00:01:01"
	base := imds.ENI{MAC: mac, IPv4: []netip.Addr{netip.MustParseAddr("100.64.2.10")}}
	prev := &imds.Snapshot{ENIs: []imds.ENI{base}}
	same := &imds.Snapshot{ENIs: []imds.ENI{base}}
	withPrefix := base
	withPrefix.IPv4Prefixes = []netip.Prefix{netip.MustParsePrefix("100.64.2.64/28")}
	withAddr := base
	withAddr.IPv4 = append([]netip.Addr{}, base.IPv4[0], netip.MustParseAddr("100.64.2.11"))
	for _, c := range []struct {
		name string
		snap *imds.Snapshot
		want bool
	}{{"nothing new", same, false}, {"a new prefix", &imds.Snapshot{ENIs: []imds.ENI{withPrefix}}, true},
		{"a new address", &imds.Snapshot{ENIs: []imds.ENI{withAddr}}, true}} {
		if got := newAddresses(prev, c.snap); got != c.want {
			t.Errorf("%s: newAddresses = %v", c.name, got)
		}
	}
}
