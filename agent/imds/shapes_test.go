package imds

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
)

func card(n int) *int { return &n }

// p5MAC names the ENIs of the p5-like instance: kind 'a' (ENA with
// addresses) or 'e' (EFA-only) on card c.
func p5MAC(kind byte, c int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", kind, c/256, c%256)
}

// p5Like is a multi-card instance as AWS lays out p5.48xlarge: the primary
// on card 0, an ENA interface at device 1 and an EFA-only interface at
// device 0 on each other card (here 1, 16, 31 and the largest card the
// table formula allows).
func p5Like() *fakeimds.Server {
	s := fakeimds.New()
	s.AttachENI(fakeimds.ENI{MAC: primaryMAC, InterfaceID: "eni-0a0000000000000001", NetworkCard: card(0),
		SubnetIPv4: "100.64.1.0/24", IPv4: []string{"100.64.1.10"}})
	s.SetPrimaryMAC(primaryMAC)
	for _, c := range []int{1, 16, 31, MaxNetworkCard} {
		s.AttachENI(fakeimds.ENI{MAC: p5MAC('a', c), InterfaceID: fmt.Sprintf("eni-0a%016x", c), DeviceNumber: 1,
			NetworkCard: card(c), SubnetIPv4: "100.64.0.0/16", IPv4: []string{fmt.Sprintf("100.64.%d.%d", 10+c/200, 1+c%200)}})
		s.AttachENI(fakeimds.ENI{MAC: p5MAC('e', c), InterfaceID: fmt.Sprintf("eni-0e%016x", c), DeviceNumber: 0,
			NetworkCard: card(c), SubnetIPv4: "100.64.0.0/16"})
	}
	return s
}

func TestMultiCardAndEFAOnly(t *testing.T) {
	s := p5Like()
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	wantState(t, mustENI(t, snap, primaryMAC), Complete, "")
	for _, n := range []int{1, 16, 31, MaxNetworkCard} {
		e := mustENI(t, snap, p5MAC('a', n))
		wantState(t, e, Complete, "")
		if e.NetworkCard != n || e.DeviceNumber != 1 || e.NoAddresses {
			t.Fatalf("card %d ENA: %+v", n, e)
		}
		efa := mustENI(t, snap, p5MAC('e', n))
		wantState(t, efa, Pending, "EFA-only")
		if !efa.NoAddresses || efa.WaitKey != "local-ipv4s" || !efa.WaitAbsent {
			t.Fatalf("card %d EFA-only: NoAddresses %v WaitKey %q absent %v", n, efa.NoAddresses, efa.WaitKey, efa.WaitAbsent)
		}
	}
}

func TestNetworkCardBeyondTableFormulaInvalid(t *testing.T) {
	s := p5Like()
	s.AttachENI(fakeimds.ENI{MAC: p5MAC('a', MaxNetworkCard+1), InterfaceID: "eni-0f01", DeviceNumber: 1,
		NetworkCard: card(MaxNetworkCard + 1), SubnetIPv4: "100.64.0.0/16", IPv4: []string{"100.64.99.1"}})
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	e := mustENI(t, snap, p5MAC('a', MaxNetworkCard+1))
	wantState(t, e, Invalid, "10000+100*card+device")
	if strings.Contains(e.Reason, "\n") {
		t.Fatalf("reason is not one line: %q", e.Reason)
	}
	for _, n := range []int{1, 16, 31, MaxNetworkCard} {
		wantState(t, mustENI(t, snap, p5MAC('a', n)), Complete, "")
	}
}

// NoAddresses says "only the addresses are missing": not when the
// device-number or the card are themselves pending, nor when a read failed.
func TestNoAddressesOnlyWhenOnlyAddressesMissing(t *testing.T) {
	s := instance(0)
	// Device 0 on card 0, no addresses: the device-number is the blocker.
	s.AttachENI(fakeimds.ENI{MAC: secondaryMAC(1), InterfaceID: "eni-0b01", DeviceNumber: 0, SubnetIPv4: "100.64.2.0/24"})
	// Settled device, no addresses: EFA-only or lag.
	s.AttachENI(fakeimds.ENI{MAC: secondaryMAC(2), InterfaceID: "eni-0b02", DeviceNumber: 2, SubnetIPv4: "100.64.2.0/24"})
	// Settled device, no addresses, but one read fails.
	s.AttachENI(fakeimds.ENI{MAC: secondaryMAC(3), InterfaceID: "eni-0b03", DeviceNumber: 3, SubnetIPv4: "100.64.2.0/24"})
	s.SetFault("network/interfaces/macs/"+secondaryMAC(3)+"/ipv6s", fakeimds.Fault{Kind: fakeimds.Fault500})
	// IPv6-only subnet, no addresses: the key to watch is ipv6s.
	s.AttachENI(fakeimds.ENI{MAC: secondaryMAC(4), InterfaceID: "eni-0b04", DeviceNumber: 4, SubnetIPv6: []string{"2001:db8:0:4::/64"}})
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)

	e1 := mustENI(t, snap, secondaryMAC(1))
	wantState(t, e1, Pending, "device-number 0")
	if e1.NoAddresses || e1.WaitKey != "device-number" || e1.WaitValue != "0" || e1.WaitAbsent {
		t.Fatalf("device-0 ENI: NoAddresses %v wait %q=%q absent %v", e1.NoAddresses, e1.WaitKey, e1.WaitValue, e1.WaitAbsent)
	}
	if e2 := mustENI(t, snap, secondaryMAC(2)); e2.State != Pending || !e2.NoAddresses {
		t.Fatalf("settled ENI without addresses: %v NoAddresses %v (%s)", e2.State, e2.NoAddresses, e2.Reason)
	}
	if e3 := mustENI(t, snap, secondaryMAC(3)); e3.State != Unknown || e3.NoAddresses {
		t.Fatalf("ENI with a failed read: %v NoAddresses %v", e3.State, e3.NoAddresses)
	}
	e4 := mustENI(t, snap, secondaryMAC(4))
	if e4.State != Pending || !e4.NoAddresses || e4.WaitKey != "ipv6s" {
		t.Fatalf("IPv6-only ENI without addresses: %v NoAddresses %v WaitKey %q", e4.State, e4.NoAddresses, e4.WaitKey)
	}
}

// An ENA ENI whose device-number still reads 0 on a card where an EFA-only
// interface holds device 0 must not take the EFA's slot (its table).
func TestEFAHoldsItsDeviceSlot(t *testing.T) {
	s := p5Like()
	lagging := fakeimds.ENI{MAC: p5MAC('b', 16), InterfaceID: "eni-0b16", DeviceNumber: 0, NetworkCard: card(16),
		SubnetIPv4: "100.64.0.0/16", IPv4: []string{"100.64.50.1"}}
	s.AttachENI(lagging)
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	e := mustENI(t, snap, p5MAC('b', 16))
	wantState(t, e, Pending, "also reported for "+p5MAC('e', 16))
	if e.WaitKey != "" {
		t.Fatalf("duplicate slot waits on %q; either ENI may change: want no single key", e.WaitKey)
	}
	efa := mustENI(t, snap, p5MAC('e', 16))
	wantState(t, efa, Pending, "EFA-only")
	if !efa.NoAddresses {
		t.Fatal("the EFA-only ENI lost NoAddresses")
	}
}

// EFA-only ENIs cost what any ENI costs on a quiet refresh: their fixed
// keys are settled and cached.
func TestQuietRefreshWithEFAOnly(t *testing.T) {
	s := p5Like()
	c := newClient(t, fastOptions(startFake(t, s)))
	snap := mustSnapshot(t, c)
	s.ResetCounters()
	mustSnapshot(t, c)
	if got, want := s.TotalRequests(), 1+4*len(snap.ENIs); got != want {
		t.Fatalf("quiet refresh made %d requests, want %d: %v", got, want, s.RequestCounts())
	}
}
