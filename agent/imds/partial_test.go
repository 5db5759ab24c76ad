package imds

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
)

// Hot attach: ReadENIs reads the listing and the new ENI only, and keeps
// the others from the previous snapshot.
func TestReadENIsReadsOnlyTheNamedENI(t *testing.T) {
	s := instance(3)
	c := newClient(t, fastOptions(startFake(t, s)))
	prev := mustSnapshot(t, c)
	s.AttachENI(secondary(4))
	s.ResetCounters()
	snap, err := c.ReadENIs(ctxT(t), prev, []string{secondaryMAC(4)})
	if err != nil {
		t.Fatal(err)
	}
	for path := range s.RequestCounts() {
		if path != macsBase && !strings.HasPrefix(path, macsBase+secondaryMAC(4)+"/") && path != tokenPUT {
			t.Fatalf("read %s: only the listing and the named ENI should be", path)
		}
	}
	if len(snap.ENIs) != 5 {
		t.Fatalf("%d ENIs, want 5", len(snap.ENIs))
	}
	wantState(t, mustENI(t, snap, secondaryMAC(4)), Complete, "")
	for _, old := range prev.ENIs {
		if got := mustENI(t, snap, old.MAC); !reflect.DeepEqual(*got, old) {
			t.Fatalf("kept ENI changed:\n got %+v\nwant %+v", *got, old)
		}
	}
	// The kept ENIs share no slice with prev.
	snap.ENI(primaryMAC).IPv4[0] = addrs("100.64.9.9")[0]
	if prev.ENI(primaryMAC).IPv4[0] == snap.ENI(primaryMAC).IPv4[0] {
		t.Fatal("ReadENIs shares address slices with prev")
	}
}

func TestReadENIsFollowsTheListing(t *testing.T) {
	s := instance(2)
	c := newClient(t, fastOptions(startFake(t, s)))
	prev := mustSnapshot(t, c)
	s.DetachENI(secondaryMAC(1))
	s.DetachENI(secondaryMAC(2))
	s.AttachENI(secondary(3))
	s.AttachENI(secondary(4))
	snap, err := c.ReadENIs(ctxT(t), prev, []string{secondaryMAC(2), secondaryMAC(3)})
	if err != nil {
		t.Fatal(err)
	}
	// Detached ENIs drop out, named or not.
	for _, gone := range []string{secondaryMAC(1), secondaryMAC(2)} {
		if snap.ENI(gone) != nil {
			t.Fatalf("detached %s still in the snapshot", gone)
		}
	}
	wantState(t, mustENI(t, snap, secondaryMAC(3)), Complete, "")
	// Listed, neither named nor known: present but not acted on.
	wantState(t, mustENI(t, snap, secondaryMAC(4)), Unknown, "not read")
	// Without prev, every unnamed ENI is such.
	snap, err = c.ReadENIs(ctxT(t), nil, []string{secondaryMAC(3)})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, mustENI(t, snap, secondaryMAC(3)), Complete, "")
	wantState(t, mustENI(t, snap, primaryMAC), Unknown, "not read")
}

// The whole-instance checks run again over the merged snapshot: a kept
// ENI made Invalid by a shared address recovers once the other is fixed.
func TestReadENIsRerunsWholeSnapshotChecks(t *testing.T) {
	s := instance(2)
	c := newClient(t, fastOptions(startFake(t, s)))
	prev := mustSnapshot(t, c)
	s.AssignIPv4(secondaryMAC(2), "100.64.2.11") // secondary 1's
	snap, err := c.ReadENIs(ctxT(t), prev, []string{secondaryMAC(2)})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Invalid, "also listed for ENI "+secondaryMAC(2))
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Invalid, "also listed for ENI "+secondaryMAC(1))
	s.UnassignIPv4(secondaryMAC(2), "100.64.2.11")
	snap, err = c.ReadENIs(ctxT(t), snap, []string{secondaryMAC(2)})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Complete, "")
	wantState(t, mustENI(t, snap, secondaryMAC(2)), Complete, "")
	// A new ENI listing the primary's address is the one refused.
	bad := secondary(3)
	bad.SubnetIPv4, bad.IPv4 = "100.64.1.0/24", []string{"100.64.1.11"}
	s.AttachENI(bad)
	snap, err = c.ReadENIs(ctxT(t), snap, []string{secondaryMAC(3)})
	if err != nil {
		t.Fatal(err)
	}
	wantState(t, mustENI(t, snap, secondaryMAC(3)), Invalid, "also listed for the primary ENI")
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
}

// Each reason for Pending names the key to watch, and Peek reads just it.
func TestWaitKeys(t *testing.T) {
	s := instance(0)
	s.SetPropagation(time.Hour)
	s.AttachENI(secondary(1)) // device-number reads 0
	s.SetPropagation(time.Hour, "subnet-ipv4-cidr-block")
	e2 := secondary(2)
	e2.DeviceNumber = 2
	s.AttachENI(e2) // also device 0: two blockers, device-number first
	s.SetPropagation(0)
	noSubnet := secondary(3)
	noSubnet.SubnetIPv4 = ""
	s.AttachENI(noSubnet)
	noAddr := secondary(4)
	noAddr.IPv4 = nil
	noAddr.IPv6 = []string{"2001:db8:0:4::4"}
	noAddr.SubnetIPv6 = []string{"2001:db8:0:4::/64"}
	s.AttachENI(noAddr) // IPv4 subnet, no IPv4 address
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	for i, want := range map[int]struct {
		key, value string
		absent     bool
	}{
		1: {"device-number", "0", false},
		2: {"device-number", "0", false},
		3: {"subnet-ipv4-cidr-block", "", true},
		4: {"local-ipv4s", "", true},
	} {
		e := mustENI(t, snap, secondaryMAC(i))
		if e.State != Pending || e.WaitKey != want.key || e.WaitValue != want.value || e.WaitAbsent != want.absent {
			t.Fatalf("ENI %d: %v (%s) waits on %q=%q absent %v; want %+v", i, e.State, e.Reason, e.WaitKey, e.WaitValue, e.WaitAbsent, want)
		}
	}
	if p := mustENI(t, snap, primaryMAC); p.WaitKey != "" || p.WaitAbsent || p.NoAddresses {
		t.Fatalf("Complete ENI with wait fields: %+v", p)
	}
	// A required key that is 404 is the key to wait on.
	s.Delete("network/interfaces/macs/" + secondaryMAC(3) + "/interface-id")
	e := mustENI(t, mustSnapshot(t, c), secondaryMAC(3))
	if e.WaitKey != "interface-id" || !e.WaitAbsent {
		t.Fatalf("interface-id 404: waits on %q absent %v (%s)", e.WaitKey, e.WaitAbsent, e.Reason)
	}
}

func TestPeek(t *testing.T) {
	s := instance(0)
	c := newClient(t, fastOptions(startFake(t, s)))
	mustSnapshot(t, c)
	s.SetPropagation(time.Hour, "subnet-ipv4-cidr-block")
	s.AttachENI(secondary(1))
	snap := mustSnapshot(t, c)
	e := mustENI(t, snap, secondaryMAC(1))
	conns := c.Stats().Connections
	s.ResetCounters()

	// Still propagating: unchanged, one request, no new connection.
	for i := 0; i < 3; i++ {
		changed, err := c.Peek(ctxT(t), e)
		if err != nil || changed {
			t.Fatalf("peek %d while propagating: %v %v", i, changed, err)
		}
	}
	if n, want := s.TotalRequests(), 3; n != want || s.Requests(macsBase+secondaryMAC(1)+"/device-number") != want {
		t.Fatalf("%d requests for 3 peeks: %v", n, s.RequestCounts())
	}
	if n := c.Stats().Connections; n != conns {
		t.Fatalf("peeks opened %d connections", n-conns)
	}
	// device-number propagated (the subnet still missing): changed; the
	// re-read then waits on the subnet.
	s.FinishPropagation()
	s.Delete("network/interfaces/macs/" + secondaryMAC(1) + "/subnet-ipv4-cidr-block")
	if changed, err := c.Peek(ctxT(t), e); err != nil || !changed {
		t.Fatalf("peek after device-number changed: %v %v", changed, err)
	}
	snap, err := c.ReadENIs(ctxT(t), snap, []string{secondaryMAC(1)})
	if err != nil {
		t.Fatal(err)
	}
	e = mustENI(t, snap, secondaryMAC(1))
	wantState(t, e, Pending, "subnet-ipv4-cidr-block")
	if changed, err := c.Peek(ctxT(t), e); err != nil || changed {
		t.Fatalf("peek with the subnet still 404: %v %v", changed, err)
	}
	s.Set("network/interfaces/macs/"+secondaryMAC(1)+"/subnet-ipv4-cidr-block", "100.64.2.0/24")
	if changed, err := c.Peek(ctxT(t), e); err != nil || !changed {
		t.Fatalf("peek after the subnet appeared: %v %v", changed, err)
	}
	snap, err = c.ReadENIs(ctxT(t), snap, []string{secondaryMAC(1)})
	if err != nil {
		t.Fatal(err)
	}
	e = mustENI(t, snap, secondaryMAC(1))
	wantState(t, e, Complete, "")

	// Nothing to peek at on a Complete ENI; a failed read is an error,
	// never "changed".
	if _, err := c.Peek(ctxT(t), e); !errors.Is(err, ErrNoWaitKey) {
		t.Fatalf("peek on a Complete ENI: %v", err)
	}
	pending := &ENI{MAC: secondaryMAC(1), State: Pending, WaitKey: "ipv6s", WaitAbsent: true}
	s.SetFault("network/interfaces/macs/"+secondaryMAC(1)+"/ipv6s", fakeimds.Fault{Kind: fakeimds.Fault500})
	if changed, err := c.Peek(ctxT(t), pending); err == nil || changed {
		t.Fatalf("peek on a 500: %v %v", changed, err)
	}
}

// Settle peeks at the waited-on key and re-reads the ENI once it changes;
// ENIs that want leaves out cost nothing.
func TestSettle(t *testing.T) {
	s := p5Like() // EFA-only ENIs: Pending, NoAddresses
	o := fastOptions(startFake(t, s))
	o.PollInterval = 10 * time.Millisecond
	c := newClient(t, o)
	mustSnapshot(t, c)
	s.SetPropagation(150*time.Millisecond, "subnet-ipv4-cidr-block")
	lagging := secondary(1)
	lagging.NetworkCard = card(0)
	s.AttachENI(lagging)
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Pending, "device-number 0")
	withLink := func(e *ENI) bool { return !e.NoAddresses } // the EFA-only ENIs have no link
	s.ResetCounters()
	snap = c.Settle(ctxT(t), snap, withLink, 20*time.Second)
	wantState(t, mustENI(t, snap, secondaryMAC(1)), Complete, "")
	wantState(t, mustENI(t, snap, p5MAC('e', 16)), Pending, "EFA-only")
	for path := range s.RequestCounts() {
		if strings.Contains(path, p5MAC('e', 16)) {
			t.Fatalf("Settle read %s of an ENI it was told not to wait for", path)
		}
	}
	// Nothing left to wait for: no request at all.
	s.ResetCounters()
	c.Settle(ctxT(t), snap, withLink, 20*time.Second)
	if n := s.TotalRequests(); n != 0 {
		t.Fatalf("%d requests with nothing to wait for: %v", n, s.RequestCounts())
	}
}
