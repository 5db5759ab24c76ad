package daemon

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"github.com/vishvananda/netns"
)

// Without a history of earlier reads (`ec2net apply`, daemon start), a
// removal is only planned on two reads that both no longer list the item;
// when nothing would be removed, one read is enough.
func TestConfirmRemovalsReadsTwiceOnlyWhenSomethingWouldGo(t *testing.T) {
	vpc := newVPC(t, "dmcnf")
	must(t, vpc.Attach(eth1))
	endpoint, err := vpc.IMDS.Start("127.0.0.1:0")
	must(t, err)
	ns, err := netns.GetFromName(vpc.Instance)
	must(t, err)
	defer ns.Close()
	client, err := imds.New(imds.Options{Endpoint: endpoint})
	must(t, err)
	rec, err := netconf.New(netconf.Options{NetNS: ns, StateDir: t.TempDir()})
	must(t, err)
	defer rec.Close()
	cfg := config.Default()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	listing := "/latest/meta-data/network/interfaces/macs/"
	read := func() *imds.Snapshot {
		s, err := client.Snapshot(ctx)
		must(t, err)
		return s
	}
	snap := read()
	if _, err := rec.Apply(snap, cfg); err != nil {
		t.Fatal(err)
	}

	vpc.IMDS.ResetCounters()
	if _, err := ConfirmRemovals(ctx, client, rec, cfg, read(), nil); err != nil {
		t.Fatal(err)
	}
	if n := vpc.IMDS.Requests(listing); n != 1 {
		t.Errorf("nothing to remove: %d reads, want 1", n)
	}

	gone := netip.MustParseAddr("100.64.2.12")
	must(t, vpc.UnassignIPv4(eth1.MAC, gone))
	vpc.IMDS.ResetCounters()
	confirmed, err := ConfirmRemovals(ctx, client, rec, cfg, read(), nil)
	must(t, err)
	if n := vpc.IMDS.Requests(listing); n != 2 {
		t.Errorf("a removal planned: %d reads, want 2", n)
	}
	if e := confirmed.ENI(eth1.MAC); e == nil || slices.Contains(e.IPv4, gone) {
		t.Errorf("two reads without %s, but it is still in the snapshot: %+v", gone, e)
	}
}
