package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/vishvananda/netlink"
)

// propagation is how long the fake IMDS of the instance an ENI is
// attached to serves device-number 0 for it, as EC2's does for a few
// seconds while an attachment propagates.
const propagation = time.Second

// floating is the ENI that is hot-attached to A and then moved to B.
var floating = vpcsim.ENISpec{Name: "eth3", MAC: "02:ec:20:00:00:04", ID: "eni-0a000000000000004", Device: 3,
	SubnetIPv4: subnetB, SubnetIPv6: subnetB6,
	IPv4: vpcsim.Addrs("100.64.2.40", "100.64.2.41"), IPv6: vpcsim.Addrs("2001:db8:0:2::40")}

// hotAttach starts `ec2net run` in the first instance (A), waits for it to
// configure the ENIs cleanup left unconfigured, then hot-attaches the
// floating ENI and measures until its addresses carry traffic. The caller
// stops the returned daemon.
func hotAttach(ctx context.Context, vpc *vpcsim.VPC, bin, dir string, cold []netip.Addr) (*daemon, error) {
	a := vpc.DefaultInstance()
	step("ec2net run (the daemon) in instance A; it configures eth1 and eth2 again")
	d, err := startDaemon(ctx, "A", a, bin, dir)
	if err != nil {
		return nil, err
	}
	status, err := d.waitReady(ctx, 20*time.Second)
	if err != nil {
		d.stop()
		return nil, err
	}
	fmt.Printf("  READY=1, status: %s\n", status)
	if _, err := waitFor(ctx, 15*time.Second, "cold-attached addresses passing", func() bool {
		for _, x := range cold {
			if !passes(ctx, a, x) {
				return false
			}
		}
		return true
	}); err != nil {
		d.stop()
		return nil, err
	}
	fmt.Printf("  %d addresses of eth1 and eth2 carry traffic again\n", len(cold))

	step(fmt.Sprintf("Hot attach: eth3 (%s) appears in A; IMDS reads device-number 0 for its first %v", floating.ID, propagation))
	vpc.IMDS.SetPropagation(propagation)
	if err := vpc.Attach(floating); err != nil {
		d.stop()
		return nil, err
	}
	took, err := waitFor(ctx, 20*time.Second, "the hot-attached ENI carrying traffic", func() bool {
		for _, x := range addrsOf(floating) {
			if !passes(ctx, a, x) {
				return false
			}
		}
		return true
	})
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("%w\n%s", err, d.logs.String())
	}
	fmt.Printf("  all %d addresses of eth3 carry traffic %v after the attach; nobody ran apply\n",
		len(addrsOf(floating)), took.Round(10*time.Millisecond))
	fmt.Printf("  A's daemon: %s\n", d.story(floating.MAC))
	return d, nil
}

// move adds instance B running its own daemon and moves the floating ENI
// from A to B, measuring from the detach until B answers on every
// address, then checks that A is left clean.
func move(ctx context.Context, vpc *vpcsim.VPC, da *daemon, bin, dir string) error {
	a := vpc.DefaultInstance()
	step("A second instance B behind the same router, running its own ec2net run")
	b, err := vpc.AddInstance()
	if err != nil {
		return err
	}
	if err := b.LaunchPrimary(vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:0b:01", ID: "eni-0b000000000000001",
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.30")}); err != nil {
		return err
	}
	db, err := startDaemon(ctx, "B", b, bin, dir)
	if err != nil {
		return err
	}
	defer db.stop()
	if _, err := db.waitReady(ctx, 20*time.Second); err != nil {
		return err
	}
	fmt.Printf("  instance %s (%s), eth0 100.64.1.30, its own IMDS view; daemon ready\n", b.Name, b.InstanceID())

	step("Move eth3 from A to B (detach, attach as B's eth1; B's IMDS propagates for 1s, A's lags 2s)")
	b.IMDS.SetPropagation(propagation)
	start := time.Now()
	if err := vpc.Move(floating.MAC, b, vpcsim.MoveOptions{Name: "eth1", Device: 1, IMDSLag: 2 * time.Second}); err != nil {
		return err
	}
	answered, aClean, err := watchMove(ctx, vpc, a, b, start)
	if err != nil {
		return fmt.Errorf("%w\nA:\n%s\nB:\n%s", err, da.logs.String(), db.logs.String())
	}
	table := 10000 + floating.Device
	var all time.Duration
	for _, x := range addrsOf(floating) {
		fmt.Printf("  %-18s answered by B (%s) %v after the detach, both ways\n", x, b.Name, answered[x].Round(10*time.Millisecond))
		all = max(all, answered[x])
	}
	fmt.Printf("  detach -> every address answered by B: %v (B's IMDS propagation %v)\n", all.Round(10*time.Millisecond), propagation)
	fmt.Printf("  B's daemon: %s\n", db.story(floating.MAC))
	fmt.Printf("  A clean %v after the detach (no link, address, rule or route of table %d left)\n", aClean.Round(10*time.Millisecond), table)
	fmt.Printf("  A's daemon: %s\n", da.story(floating.MAC))
	if os.Getenv("DEMO_DEBUG") != "" {
		fmt.Println(da.logs.String())
	}
	if !passes(ctx, b, netip.MustParseAddr("100.64.1.30")) {
		return fmt.Errorf("instance B's own eth0 stopped working")
	}
	fmt.Println("  B's own eth0 still carries traffic")
	return nil
}

// watchMove measures, from start, when B answers on each address of the
// moved ENI (each address probed on its own, a fresh connection attempt
// every 100 ms) and when A has nothing left of it (polled every 20 ms).
func watchMove(ctx context.Context, vpc *vpcsim.VPC, a, b *vpcsim.Instance, start time.Time) (map[netip.Addr]time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	type result struct {
		addr netip.Addr // invalid: A clean
		at   time.Duration
		err  error
	}
	results := make(chan result)
	for _, x := range addrsOf(floating) {
		go func() {
			for {
				who, _, err := vpc.ProbeAnswerer(ctx, x)
				if err == nil && who == b && passes(ctx, b, x) {
					results <- result{addr: x, at: time.Since(start)}
					return
				}
				if ctx.Err() != nil {
					results <- result{addr: x, err: fmt.Errorf("%s not answered by B: %w (last: %v)", x, ctx.Err(), err)}
					return
				}
			}
		}()
	}
	go func() {
		var left []string
		_, err := waitFor(ctx, 20*time.Second, "A left clean", func() bool {
			var lerr error
			left, lerr = leftovers(vpc, a, floating, 10000+floating.Device)
			return lerr == nil && len(left) == 0
		})
		if err != nil {
			err = fmt.Errorf("%w: A still has %v", err, left)
		}
		results <- result{at: time.Since(start), err: err}
	}()
	answered := map[netip.Addr]time.Duration{}
	var aClean time.Duration
	var errs []error
	for range len(addrsOf(floating)) + 1 {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case r.addr.IsValid():
			answered[r.addr] = r.at
		default:
			aClean = r.at
		}
	}
	return answered, aClean, errors.Join(errs...)
}

// handConfigure adds (or removes) an address on an instance link and sets
// it up (or down) through netlink, as `ip addr add` and `ip link set up`
// would, without policy routing.
func handConfigure(vpc *vpcsim.VPC, link string, p netip.Prefix, add bool) error {
	h, err := vpc.Handle(vpc.Instance)
	if err != nil {
		return err
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nl.Close()
	l, err := nl.LinkByName(link)
	if err != nil {
		return err
	}
	a, err := netlink.ParseAddr(p.String())
	if err != nil {
		return err
	}
	if !add {
		if err := nl.AddrDel(l, a); err != nil {
			return err
		}
		return nl.LinkSetDown(l)
	}
	if err := nl.AddrAdd(l, a); err != nil {
		return err
	}
	return nl.LinkSetUp(l)
}
