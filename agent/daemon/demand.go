package daemon

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
)

// IMDS cannot push, so a secondary address assigned to an ENI would wait
// for the next refresh (a minute) before the host answers for it. But the
// VPC delivers traffic for it at once, and the kernel counts every packet
// it receives for an address that is not its own (InAddrErrors in
// /proc/net/snmp and snmp6, and Ip6InNoRoutes, when it does not forward).
// A rise of those counters is evidence that an address was assigned: it triggers a read
// of the ENIs with a link, at most one per demandMin, and twice as rarely
// (up to demandMax) each time such a read finds nothing new, so a flood
// of stray packets never costs more than that. Where the host forwards
// (a router, Docker) packets for foreign addresses are forwarded, not
// counted: the mechanism is off and the refresh alone applies.
const (
	demandPoll = 250 * time.Millisecond
	demandMin  = 2 * time.Second
	demandMax  = time.Minute
)

// Counters reads the namespace's counts of packets received for
// addresses not its own (IPv4 and IPv6 together) and whether it forwards.
type Counters func() (stray uint64, forwarding bool, err error)

type demand struct {
	read     Counters
	last     uint64
	primed   bool
	next     time.Time     // the earliest next demand read
	interval time.Duration // between demand reads now
	waiting  bool          // a demand read is under way
	risen    bool          // the counters rose since the last demand read was asked for
	off      bool
}

func newDemand(read Counters) *demand { return &demand{read: read, interval: demandMin} }

// poll reads the counters; true means a read should happen now.
func (d *demand) poll(now time.Time) bool {
	if d.read == nil || d.off {
		return false
	}
	n, fwd, err := d.read()
	if err != nil || fwd {
		d.off = err != nil // an unreadable counter stays off; forwarding may end
		d.primed = false
		return false
	}
	if d.primed && n > d.last {
		// Kept until a read can be asked for: a rise within the hold-off
		// (a second address assigned a second after the first) is read
		// when the hold-off ends, not when its sender next retransmits.
		d.risen = true
	}
	d.last, d.primed = n, true
	if !d.risen || d.waiting || now.Before(d.next) {
		return false
	}
	d.risen, d.waiting = false, true
	d.next = now.Add(d.interval)
	return true
}

// readDone says whether the demand read found something new: the pace
// goes back to demandMin, or slows down.
func (d *demand) readDone(foundNew bool) {
	if !d.waiting {
		return
	}
	d.waiting = false
	if foundNew {
		// What rose during the read was most likely the new address's
		// own packets, sent before it was configured; a sender still
		// unanswered retransmits and raises the counters again.
		d.risen = false
		d.interval = demandMin
	} else {
		d.interval = min(2*d.interval, demandMax)
	}
}

// nsCounters reads /proc/thread-self/net/snmp and snmp6 from a thread in
// ns (they show the reading thread's network namespace).
func nsCounters(ns netns.NsHandle) Counters {
	return func() (uint64, bool, error) {
		var v4, v6 []byte
		err := nsutil.Do(ns, func() (err error) {
			if v4, err = os.ReadFile("/proc/thread-self/net/snmp"); err != nil {
				return err
			}
			v6, _ = os.ReadFile("/proc/thread-self/net/snmp6") // absent without IPv6
			return nil
		})
		if err != nil {
			return 0, false, err
		}
		n4, fwd := snmpStray(v4)
		return n4 + snmp6Stray(v6), fwd, nil
	}
}

// snmpStray returns Ip: InAddrErrors and whether Ip: Forwarding is 1.
func snmpStray(b []byte) (uint64, bool) {
	var head []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if head == nil {
			head = f
			continue
		}
		var stray uint64
		fwd := false
		for i := 1; i < len(f) && i < len(head); i++ {
			switch head[i] {
			case "InAddrErrors":
				stray, _ = strconv.ParseUint(f[i], 10, 64)
			case "Forwarding":
				fwd = f[i] == "1"
			}
		}
		return stray, fwd
	}
	return 0, false
}

// snmp6Stray returns Ip6InAddrErrors + Ip6InNoRoutes. The second counts
// a packet for an address not local when the main table has no IPv6 route
// to it (a host whose primary ENI is IPv4-only: ec2net's own routes are in
// the ENI tables, selected by source). The kernel then also answers with
// an ICMPv6 "no route", which makes the sender's first connect fail at
// once; its retry, after the read this rise triggers, gets through.
func snmp6Stray(b []byte) uint64 {
	var n uint64
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && (f[0] == "Ip6InAddrErrors" || f[0] == "Ip6InNoRoutes") {
			v, _ := strconv.ParseUint(f[1], 10, 64)
			n += v
		}
	}
	return n
}
