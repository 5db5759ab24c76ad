package converge

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netns"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Without a history of earlier reads (`ec2net apply`, daemon start), a
// removal is only made on two reads that both no longer list the item,
// remove-after-time apart; when nothing would be removed, one read is
// enough. plan takes exactly the same path.
func TestOnceReadsTwiceOnlyWhenSomethingWouldGo(t *testing.T) {
	nstest.RequireRoot(t)
	vpc := vpcsim.NewForTest(t, "cvonce")
	subnetA, subnetB := netip.MustParsePrefix("100.64.1.0/24"), netip.MustParsePrefix("100.64.2.0/24")
	must(t, vpc.AddSubnet(subnetA, netip.Prefix{}))
	must(t, vpc.AddSubnet(subnetB, netip.Prefix{}))
	must(t, vpc.LaunchPrimary(vpcsim.ENISpec{Name: "eth0", MAC: "02:ec:20:00:03:00", ID: "eni-0c0000000000000300",
		SubnetIPv4: subnetA, IPv4: vpcsim.Addrs("100.64.1.10")}))
	eth1 := vpcsim.ENISpec{Name: "eth1", MAC: "02:ec:20:00:03:01", ID: "eni-0c0000000000000301", Device: 1,
		SubnetIPv4: subnetB, IPv4: vpcsim.Addrs("100.64.2.10", "100.64.2.11", "100.64.2.12")}
	must(t, vpc.Attach(eth1))
	endpoint, err := vpc.IMDS.Start("127.0.0.1:0")
	must(t, err)
	ns, err := netns.GetFromName(vpc.Instance)
	must(t, err)
	defer ns.Close()
	client, err := imds.New(imds.Options{Endpoint: endpoint})
	must(t, err)
	r, err := netconf.New(netconf.Options{NetNS: ns, StateDir: t.TempDir()})
	must(t, err)
	defer r.Close()
	rec := &planCounter{Reconciler: r}
	cfg := config.Default()
	cfg.RemoveAfterTime = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	listing := "/latest/meta-data/network/interfaces/macs/"

	if _, err := Once(ctx, client, rec, Options{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	vpc.IMDS.ResetCounters()
	if _, err := Once(ctx, client, rec, Options{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	if n := vpc.IMDS.Requests(listing); n != 1 {
		t.Errorf("nothing to remove: %d reads, want 1", n)
	}
	if rec.plans != 0 {
		t.Errorf("apply computed %d separate plans: the evidence question is asked of the apply's own pass", rec.plans)
	}

	gone := netip.MustParseAddr("100.64.2.12")
	must(t, vpc.UnassignIPv4(eth1.MAC, gone))
	for _, dry := range []bool{true, false} {
		vpc.IMDS.ResetCounters()
		start := time.Now()
		out, err := Once(ctx, client, rec, Options{Config: cfg, DryRun: dry})
		must(t, err)
		if n := vpc.IMDS.Requests(listing); n != 2 {
			t.Errorf("dry %v: a removal planned: %d reads, want 2", dry, n)
		}
		if d := time.Since(start); d < cfg.RemoveAfterTime {
			t.Errorf("dry %v: the confirming read came %v after the first, before remove-after-time", dry, d)
		}
		if e := out.Snapshot.ENI(eth1.MAC); e == nil || slices.Contains(e.IPv4, gone) {
			t.Errorf("dry %v: two reads without %s, but it is still in the snapshot: %+v", dry, gone, e)
		}
		if dry && len(out.Plan.Changes) == 0 {
			t.Errorf("the plan does not show the removal")
		}
		if !dry {
			if rec.plans != 0 {
				t.Errorf("apply computed %d separate plans", rec.plans)
			}
			if !slices.ContainsFunc(out.Result.ENIs, func(e netconf.ENIResult) bool {
				return slices.ContainsFunc(e.Applied, func(c netconf.Change) bool {
					return c.Op == netconf.OpDel && c.Kind == netconf.KindAddr && c.Addr.Prefix.Addr() == gone
				})
			}) {
				t.Errorf("the confirmed removal of %s was not applied: %+v", gone, out.Result.ENIs)
			}
		}
		rec.plans = 0
	}
}

// planCounter counts the separate plans converging asks of the target.
type planCounter struct {
	*netconf.Reconciler
	plans int
}

func (p *planCounter) Plan(s *imds.Snapshot, c config.Config) (*netconf.Plan, error) {
	p.plans++
	return p.Reconciler.Plan(s, c)
}
