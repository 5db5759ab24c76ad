package vpcsim

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// bSpec is the primary ENI of a second instance, in subnet A.
func bSpec() ENISpec {
	return ENISpec{
		Name: "eth0", MAC: "02:00:00:00:0b:00", ID: "eni-0000000000000000b",
		SubnetIPv4: subnetA4, SubnetIPv6: subnetA6,
		IPv4: []netip.Addr{addr("100.64.1.11")}, IPv6: []netip.Addr{addr("2001:db8:1:1::11")},
	}
}

// newTwoInstanceBed is newBed plus a second instance with its primary.
func newTwoInstanceBed(t *testing.T) (*VPC, *Instance, *Instance) {
	t.Helper()
	v := newBed(t)
	b, err := v.AddInstance()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.LaunchPrimary(bSpec()); err != nil {
		t.Fatal(err)
	}
	return v, v.DefaultInstance(), b
}

// waitUntil polls cond every 10 ms until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTwoInstancesEachSeeTheirOwnIMDS(t *testing.T) {
	v, a, b := newTwoInstanceBed(t)
	if got := v.Instances(); len(got) != 2 || got[0] != a || got[1] != b || a.Name != v.Instance || a.IMDS != v.IMDS {
		t.Fatalf("instances %v, default %s", got, a)
	}
	ctx := context.Background()
	for _, c := range []struct {
		inst      *Instance
		id, mac   string
		localIPv4 string
	}{
		{a, "i-0fa4e2d1c0ffee001", primarySpec().MAC, primaryV4.String()},
		{b, "i-0fa4e2d1c0ffee002", bSpec().MAC, "100.64.1.11"},
	} {
		for _, imds := range []netip.Addr{IMDSAddr, IMDSAddrIPv6} {
			for path, want := range map[string]string{"instance-id": c.id, "mac": c.mac, "local-ipv4": c.localIPv4} {
				got, err := c.inst.GetIMDS(ctx, imds, path)
				if err != nil || got != want {
					t.Errorf("%s via %s: %s = %q (%v), want %q", c.inst, imds, path, got, err, want)
				}
			}
		}
		if c.inst.InstanceID() != c.id {
			t.Errorf("%s: InstanceID %s", c.inst, c.inst.InstanceID())
		}
	}
	if _, ok := v.IMDS.ENI(bSpec().MAC); ok {
		t.Error("the first instance's IMDS lists the second's primary ENI")
	}
	// Both instances reach the remote host and answer for their own
	// addresses only.
	for inst, src := range map[*Instance]netip.Addr{a: primaryV4, b: addr("100.64.1.11")} {
		if res, err := inst.ProbeTCP(ctx, src); err != nil || res.SeenSource != src {
			t.Fatalf("%s TCP from %s: %v %v", inst, src, res, err)
		}
		got, _, err := v.ProbeAnswerer(ctx, src)
		if err != nil || got != inst {
			t.Fatalf("answerer of %s: %v %v, want %s", src, got, err, inst)
		}
	}
	if r := b.ProbeAddrs(ctx, addr("2001:db8:1:1::11"))[0]; !r.OK() {
		t.Fatalf("%s: %v %v %v", r, r.OutErr, r.InErr, r.ICMPErr)
	}
}

// linkEvents subscribes to an instance's link updates.
func linkEvents(t *testing.T, i *Instance) chan netlink.LinkUpdate {
	t.Helper()
	h, err := i.handle()
	if err != nil {
		t.Fatal(err)
	}
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{Namespace: &h}); err != nil {
		t.Fatal(err)
	}
	return updates
}

// nextEventFor returns the first update about mac.
func nextEventFor(t *testing.T, updates chan netlink.LinkUpdate, mac string) netlink.LinkUpdate {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case u := <-updates:
			if u.Attrs().HardwareAddr.String() == mac {
				return u
			}
		case <-deadline:
			t.Fatalf("no link event for %s within 5 s", mac)
		}
	}
}

func TestMoveENIToAnotherInstance(t *testing.T) {
	v, a, b := newTwoInstanceBed(t)
	ctx := context.Background()
	s := secondarySpec()
	if err := v.Attach(s); err != nil {
		t.Fatal(err)
	}
	addrs := []netip.Prefix{netip.PrefixFrom(s.IPv4[0], 24), netip.PrefixFrom(s.IPv4[1], 24), netip.PrefixFrom(s.IPv6[0], 128)}
	configureByHand(t, v, "eth1", addrs, addr("100.64.2.1"), GatewayLinkLocal, 10001)
	for _, p := range addrs {
		if got, _, err := v.ProbeAnswerer(ctx, p.Addr()); err != nil || got != a {
			drops, _ := v.Drops()
			t.Fatalf("before the move, %s answered by %v (%v), want %s\n%s%s", p.Addr(), got, err, a, drops, diag(v))
		}
	}
	v.mu.Lock()
	oldPort := v.enis[s.MAC].port
	v.mu.Unlock()
	before := checkObjects(t, v)
	aEvents, bEvents := linkEvents(t, a), linkEvents(t, b)
	b.IMDS.SetPropagation(time.Hour)

	if err := v.Move(s.MAC, b, MoveOptions{Device: 2, IMDSLag: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	// A sees the link go down (the device closes) and then RTM_DELLINK.
	for u := nextEventFor(t, aEvents, s.MAC); u.Header.Type != unix.RTM_DELLINK; u = nextEventFor(t, aEvents, s.MAC) {
		if u.Attrs().Flags&net.FlagUp != 0 {
			t.Fatalf("event in A before RTM_DELLINK: type %d, link up", u.Header.Type)
		}
	}
	u := nextEventFor(t, bEvents, s.MAC)
	if u.Header.Type != unix.RTM_NEWLINK || u.Attrs().Name != "eth1" || u.Attrs().Flags&net.FlagUp != 0 {
		t.Fatalf("first event in B: type %d link %s flags %v", u.Header.Type, u.Attrs().Name, u.Attrs().Flags)
	}
	if a.LinkName(s.MAC) != "" || v.LinkName(s.MAC) != "" || b.LinkName(s.MAC) != "eth1" || v.InstanceOf(s.MAC) != b {
		t.Fatalf("links after the move: A %q, B %q", a.LinkName(s.MAC), b.LinkName(s.MAC))
	}
	// A's IMDS forgets it after the lag; B's lists it, propagating.
	waitUntil(t, 5*time.Second, "A's IMDS forgets the moved ENI", func() bool {
		_, ok := a.IMDS.ENI(s.MAC)
		return !ok
	})
	if got, err := b.GetIMDS(ctx, IMDSAddr, "network/interfaces/macs/"+s.MAC+"/device-number"); err != nil || got != "0" {
		t.Fatalf("B's device-number while propagating: %q %v", got, err)
	}
	b.IMDS.FinishPropagation()
	if got, err := b.GetIMDS(ctx, IMDSAddr, "network/interfaces/macs/"+s.MAC+"/device-number"); err != nil || got != "2" {
		t.Fatalf("B's device-number after propagation: %q %v", got, err)
	}
	if e, ok := b.IMDS.ENI(s.MAC); !ok || len(e.IPv4) != 2 || len(e.IPv6) != 1 {
		t.Fatalf("B's IMDS: %+v %v", e, ok)
	}
	// The router's check follows: the old port's objects are gone, the
	// neighbours still point at the MAC.
	now := checkObjects(t, v)
	if strings.Contains(now, "from_"+oldPort+"\n") || !strings.Contains(before, "from_"+oldPort+"\n") {
		t.Fatalf("check objects of %s before:\n%s\nafter:\n%s", oldPort, before, now)
	}
	if n := permanentNeighbours(t, v); !strings.Contains(n, "100.64.2.20 lladdr "+s.MAC) {
		t.Fatalf("router neighbours after the move:\n%s", n)
	}
	// Nobody answers until B configures the addresses; then B does.
	if got, _, err := v.ProbeAnswerer(fastCtx(t), s.IPv4[0]); err == nil {
		t.Fatalf("%s answered by %s before B configured it", s.IPv4[0], got)
	}
	configureIn(t, v, b.Name, "eth1", addrs, addr("100.64.2.1"), GatewayLinkLocal, 10002)
	for _, p := range addrs {
		got, _, err := v.ProbeAnswerer(ctx, p.Addr())
		if err != nil || got != b {
			drops, _ := v.Drops()
			t.Fatalf("after the move, %s answered by %v (%v), want %s\n%s%s", p.Addr(), got, err, b, drops, diag(v))
		}
		if res, err := b.ProbeTCP(ctx, p.Addr()); err != nil || res.SeenSource != p.Addr() {
			t.Fatalf("B TCP from %s: %v %v", p.Addr(), res, err)
		}
	}
	// Back to A, with a lag that has not run out: B's IMDS still lists it.
	if err := v.Move(s.MAC, a, MoveOptions{IMDSLag: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.IMDS.ENI(s.MAC); !ok {
		t.Fatal("B's IMDS forgot the ENI before its lag")
	}
	if err := v.Move(s.MAC, a, MoveOptions{}); err == nil {
		t.Fatal("moved an ENI to the instance it is on")
	}
	if err := v.Move(primarySpec().MAC, b, MoveOptions{}); err == nil {
		t.Fatal("moved a primary ENI")
	}
}
